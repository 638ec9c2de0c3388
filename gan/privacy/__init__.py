"""Privacy and utility report of a face anonymizer: the question of "Safe Fakes" (Klomp et al., FG 2021).

    python -m gan.privacy --model EXPORT_DIR --data DATASET [--num 500] [--report OUT_DIR] [--workers 2]
    python -m gan.privacy --model EXPORT_DIR --photos DIR --detections FILE.json [--report OUT_DIR]

Every face box is anonymised with each method of a fixed panel (``original`` as the control, ``blur``,
``pixelate``, ``black_box``, and the export with z = 0 and with random z) and each result is measured
against the original face with dlib (``data.face_analysis``):

- identity: the 128-D descriptor of the original and of the anonymised face, both on the same known box;
  the mean distance, the re-identification rate (verification: distance < 0.6, dlib's same-person threshold)
  and the rank-1 identification rate (the nearest original of the whole set is the face's own source);
  ``--identity onnx:PATH`` swaps in any face-embedding network (``data.identity``);
- detectability: the HOG detector (upsampled once) on the image; a face counts as detected when a detection
  overlaps its known box with IoU >= 0.5; the rate, and the rate relative to ``original``;
- landmark fidelity: on faces detected in both images, the mean distance between the 5 landmarks found
  in each detection, divided by the original's inter-ocular distance;
- realism (face crops only): FID of each method's crops against the originals (the extractor is named).

A good anonymizer is detected like the original and re-identified never. Faces whose box is under
``MIN_FACE_PIXELS`` are counted as too small and not measured. The report folder gets ``report.json``
(every number, the rules, the counts, the export's sha256 and images seen), ``report.md``,
``tradeoff.png`` (re-identification vs detection, one point per method) and ``contact.png``.

The package: ``measure`` (one image against its original, with dlib; all the training callback imports),
``methods`` (the panel; the export runs through ``gan.anonymize.Anonymizer``, so what is measured is exactly what
the anonymizer writes; FID through ``gan.fid``), ``report`` (the files) and ``cli`` (the drivers and this command).
``downstream`` is the other question of the paper: a detector trained on each method's anonymised photos, tested
on the originals (``python -m gan.privacy.downstream``).
"""
