"""Face detectors trained on a set of photos, behind one small interface, for the downstream experiment
(``gan.privacy.downstream``): ``trainer.train(images, boxes, ignore) -> detector``, ``detector.detect(image) ->
(boxes, scores)``. Another trainer (a CNN, say) plugs in by providing the same two methods and ``min_face``.

``DlibHogTrainer`` is dlib's HOG + linear SVM (``dlib.train_simple_object_detector``, the structural SVM trainer
behind dlib's own frontal face detector): seconds on a CPU, no pretrained weights, deterministic. Photos go to its
trainer as an image-dataset XML file with lossless PNGs, because only that path honours boxes marked ``ignore``
(faces too small for the window, or WIDER FACE's invalid ones): the trainer neither learns from them nor counts a
detection on them as false.
"""

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from data.record import DataError


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(H, W, 3)`` uint8 RGB -> ``(boxes (N, 4) xyxy pixels, scores (N,))``, higher = more confident."""


class DetectorTrainer(Protocol):
    name: str

    @property
    def min_face(self) -> float:
        """The shortest face side (pixels) the detector can learn and find; smaller faces are ignored and counted."""

    def train(self, images: list[np.ndarray], boxes: list[np.ndarray], ignore: list[np.ndarray]) -> Detector:
        """A detector trained on ``images`` with faces at ``boxes`` (``(N, 4)`` xyxy pixels each); ``ignore``
        ``(N,)`` marks boxes that are neither faces to learn nor background."""


@dataclass
class DlibHogDetector:
    detector: object  # dlib.simple_object_detector
    upsample: int
    threshold: float  # dlib's adjust_threshold: below 0 reports weaker detections too (the tail of the PR curve)

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import dlib

        rects, scores, _ = dlib.fhog_object_detector.run_multiple([self.detector], np.ascontiguousarray(image),
                                                                  self.upsample, self.threshold)
        boxes = np.array([(r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in rects], dtype=np.float64)
        return boxes.reshape(-1, 4), np.asarray(scores, dtype=np.float64)


@dataclass
class DlibHogTrainer:
    """dlib's HOG face detector trainer.

    Args:
        window: side of the square detection window in pixels (dlib's ``detection_window_size`` is its area).
        C: the SVM's regularisation: larger fits the training faces harder (dlib's examples use 5).
        upsample: times the photos are upsampled (x2 each) to find faces smaller than the window, when training
            (dlib's ``upsample_limit``) and detecting.
        epsilon: the trainer's stopping tolerance.
        flips: also train on left-right mirrored photos (faces are symmetric enough).
        threshold: detections down to this SVM score are reported (AP needs the weak ones too).
        threads: trainer threads (default: every core).
    """

    window: int = 40
    C: float = 5.0
    upsample: int = 1
    epsilon: float = 0.01
    flips: bool = True
    threshold: float = -0.5
    threads: int = 0
    name: str = "dlib-hog"

    def __post_init__(self) -> None:
        if self.window < 16 or self.C <= 0 or self.upsample < 0:
            raise ValueError(f"the HOG detector needs --detector-window >= 16, --C > 0 and --upsample >= 0; got "
                             f"{self.window}, {self.C}, {self.upsample}")

    @property
    def min_face(self) -> float:
        return self.window / 2**self.upsample

    def options(self):
        import dlib

        options = dlib.simple_object_detector_training_options()
        options.add_left_right_image_flips = self.flips
        options.C = self.C
        options.epsilon = self.epsilon
        options.detection_window_size = self.window * self.window
        options.upsample_limit = self.upsample
        options.num_threads = self.threads or os.cpu_count() or 1
        options.be_verbose = False
        return options

    def train(self, images: list[np.ndarray], boxes: list[np.ndarray], ignore: list[np.ndarray]) -> DlibHogDetector:
        import dlib

        meta = dlib.image_dataset_metadata
        if not any(len(b) and not i.all() for b, i in zip(boxes, ignore, strict=True)):
            raise DataError("no_training_faces", "training set", "no face to learn: every face is ignored or the "
                            f"photos have none (the detector needs faces of at least {self.min_face:g} px)")
        with tempfile.TemporaryDirectory(prefix="safefakes-hog-") as tmp:
            dataset = meta.dataset()
            for index, (image, image_boxes, image_ignore) in enumerate(zip(images, boxes, ignore, strict=True)):
                path = Path(tmp) / f"{index:06d}.png"
                Image.fromarray(image).save(path, compress_level=1)
                entry = meta.image()
                entry.filename = str(path)
                for box, ignored in zip(image_boxes, image_ignore, strict=True):
                    item = meta.box()
                    x0, y0, x1, y1 = (int(round(v)) for v in box)
                    item.rect = dlib.rectangle(x0, y0, x1 - 1, y1 - 1)
                    item.ignore = bool(ignored)
                    entry.boxes.append(item)
                dataset.images.append(entry)
            xml, svm = str(Path(tmp) / "train.xml"), str(Path(tmp) / "detector.svm")
            meta.save_image_dataset_metadata(dataset, xml)
            try:
                dlib.train_simple_object_detector(xml, svm, self.options())
            except RuntimeError as error:  # dlib names the image and box it cannot use
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise DataError("detector_training", "training set", f"dlib's trainer refused it: {first}") from None
            detector = dlib.simple_object_detector(svm)
        return DlibHogDetector(detector, self.upsample, self.threshold)
