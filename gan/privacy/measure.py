"""What the privacy report measures of one anonymised image against its original, with dlib
(``data.face_analysis``): identity distance and re-identification, detection, landmark error. The training
callback (``gan.training.callbacks.PrivacyCallback``) imports this module only."""

import multiprocessing
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from tqdm import tqdm

from data.face_analysis import MIN_FACE_PIXELS, FaceAnalyzer, landmark_error, matching_detection


@dataclass
class Tally:
    """Sums over faces for one method; ``summary`` turns them into rates."""

    faces: int = 0  # faces measured
    too_small: int = 0  # faces under MIN_FACE_PIXELS, not measured
    distance_sum: float = 0.0
    reidentified: int = 0
    detected: int = 0
    landmark_error_sum: float = 0.0
    landmark_faces: int = 0  # faces detected in both images

    def __iadd__(self, other: "Tally") -> "Tally":
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([float(getattr(self, f.name)) for f in fields(self)], dtype=torch.float64)

    @classmethod
    def from_tensor(cls, values: torch.Tensor) -> "Tally":
        kinds = [f.type for f in fields(cls)]
        return cls(*(int(v) if kind in (int, "int") else float(v) for v, kind in zip(values.tolist(), kinds,
                                                                                     strict=True)))

    def summary(self, original: "Tally | None" = None) -> dict:
        """Rates (None where nothing was measured), with the counts they come from."""
        def rate(count, total):
            return count / total if total else None

        out = {
            "identity_distance": rate(self.distance_sum, self.faces),
            "reid_rate": rate(self.reidentified, self.faces),
            "detection_rate": rate(self.detected, self.faces),
            "landmark_error": rate(self.landmark_error_sum, self.landmark_faces),
            **asdict(self),
        }
        if original is not None:
            out["detection_rate_vs_original"] = rate(self.detected, original.detected)
        return out


@dataclass
class Reference:
    """What is measured once per original face: its descriptor, its detection and landmarks (None if undetected)."""

    box: tuple
    descriptor: np.ndarray | None  # None: too small to measure
    detection: tuple | None
    landmarks: np.ndarray | None


def too_small(box) -> bool:
    return min(box[2] - box[0], box[3] - box[1]) < MIN_FACE_PIXELS


def references(analyzer: FaceAnalyzer, original: np.ndarray, boxes) -> list[Reference]:
    """The original's side of every measurement, for each known box (xyxy pixels) of ``original``."""
    detections = analyzer.detect(original)
    out = []
    for box in boxes:
        box = tuple(float(v) for v in box)
        if too_small(box):
            out.append(Reference(box, None, None, None))
            continue
        match = matching_detection(detections, box)
        landmarks = analyzer.landmarks(original, match) if match else None
        out.append(Reference(box, analyzer.descriptor(original, box), match, landmarks))
    return out


def compare(analyzer: FaceAnalyzer, refs: list[Reference], image: np.ndarray,
            descriptors: list | None = None) -> Tally:
    """Measure ``image`` (the original with its faces anonymised) against the references of its faces; the
    descriptor of each measured face is appended to ``descriptors`` if given."""
    tally = Tally()
    detections = analyzer.detect(image)
    for ref in refs:
        if ref.descriptor is None:
            tally.too_small += 1
            continue
        tally.faces += 1
        descriptor = analyzer.descriptor(image, ref.box)
        if descriptors is not None:
            descriptors.append(descriptor)
        distance = float(np.linalg.norm(ref.descriptor - descriptor))
        tally.distance_sum += distance
        tally.reidentified += int(distance < analyzer.threshold)
        match = matching_detection(detections, ref.box)
        tally.detected += int(match is not None)
        if match is not None and ref.landmarks is not None:
            tally.landmark_error_sum += landmark_error(ref.landmarks, analyzer.landmarks(image, match))
            tally.landmark_faces += 1
    return tally


def control(refs: list[Reference]) -> Tally:
    """The ``original`` row: the original compared with itself (the same descriptor and detections)."""
    tally = Tally()
    for ref in refs:
        if ref.descriptor is None:
            tally.too_small += 1
            continue
        tally.faces += 1
        tally.reidentified += 1
        if ref.detection is not None:
            tally.detected += 1
            tally.landmark_faces += int(ref.landmarks is not None)
    return tally


def measure(analyzer: FaceAnalyzer, original: np.ndarray, anonymized: dict[str, np.ndarray], boxes,
            descriptors: dict[str, list] | None = None) -> dict[str, Tally]:
    """``{"original": control, method: Tally}`` for one image whose faces are at ``boxes`` (xyxy pixels); with
    ``descriptors``, each measured face's descriptor is appended to ``descriptors[method]`` (and the original's to
    ``descriptors["original"]``), in the same order for every method."""
    refs = references(analyzer, original, boxes)
    if descriptors is not None:
        descriptors.setdefault("original", []).extend(r.descriptor for r in refs if r.descriptor is not None)
    return {"original": control(refs),
            **{name: compare(analyzer, refs, image, None if descriptors is None else descriptors.setdefault(name, []))
               for name, image in anonymized.items()}}


def rank1_rates(descriptors: dict[str, list]) -> dict[str, float | None]:
    """Rank-1 identification, the re-identification protocol of the field: for each anonymised face, is its
    nearest original (over every original face of the set, by identity distance) its own source?"""
    originals = np.array(descriptors.get("original", []))
    out = {}
    for name, found in descriptors.items():
        if not len(found) or not len(originals):
            out[name] = None
            continue
        distances = np.linalg.norm(np.array(found)[:, None, :] - originals[None, :, :], axis=-1)
        out[name] = float((distances.argmin(axis=1) == np.arange(len(found))).mean())
    return out


_ANALYZER: FaceAnalyzer | None = None  # one per worker process


def _start_worker(mmod: bool, identity="dlib") -> None:
    global _ANALYZER
    torch.set_num_threads(1)
    _ANALYZER = FaceAnalyzer(mmod, identity)


def _measure_job(job) -> tuple[dict[str, Tally], dict[str, list]]:
    original, anonymized, boxes = job
    descriptors: dict[str, list] = {}
    return measure(_ANALYZER, original, anonymized, boxes, descriptors), descriptors


def measure_all(jobs, count: int, methods: list[str], workers: int, mmod: bool, progress: bool,
                identity="dlib") -> tuple[dict[str, Tally], dict[str, float | None]]:
    """Sum ``measure`` over ``jobs`` (original, {method: image}, boxes), in ``workers`` processes; ``methods``
    includes ``original``. Returns the tallies and each method's rank-1 identification rate."""
    totals = {name: Tally() for name in methods}
    descriptors: dict[str, list] = {name: [] for name in methods}
    bar = tqdm(total=count, desc="privacy: identity, detection, landmarks", disable=not progress, unit="image")
    if workers <= 1:
        _start_worker(mmod, identity)
        results = map(_measure_job, jobs)
    else:  # dlib holds the GIL: processes, started clean (spawn), each with its own models
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_start_worker,
                                                         initargs=(mmod, identity))
        results = pool.imap(_measure_job, jobs, chunksize=4)
    try:
        for tallies, found in results:
            for name, tally in tallies.items():
                totals[name] += tally
            for name, vectors in found.items():
                descriptors[name] += vectors
            bar.update()
    finally:
        bar.close()
        if workers > 1:
            pool.terminate()
    return totals, rank1_rates(descriptors)
