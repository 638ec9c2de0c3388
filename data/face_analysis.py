"""dlib's face analysis, offline: identity descriptors, the HOG face detector and 5-point landmarks.

Models (public domain) come from the ``face-recognition-models`` package, located without importing it
(its ``__init__`` needs ``pkg_resources``): ``dlib_face_recognition_resnet_model_v1.dat`` (128-D identity
descriptor; distance < 0.6 = the same person, 99.38 % on LFW), ``shape_predictor_5_face_landmarks.dat``
and ``mmod_human_face_detector.dat``. The 68-point predictor is never used (its training data forbids
commercial use). Install: ``pip install 'safefakes[privacy]'`` (dlib-bin and face-recognition-models).
"""

import importlib.util
from pathlib import Path

import numpy as np

INSTALL = "pip install 'safefakes[privacy]'  (dlib-bin==20.0.1.post1 face-recognition-models==0.3.0)"
MODEL_FILES = {
    "descriptor": "dlib_face_recognition_resnet_model_v1.dat",
    "landmarks": "shape_predictor_5_face_landmarks.dat",
    "mmod": "mmod_human_face_detector.dat",
}
SAME_PERSON_DISTANCE = 0.6  # dlib's threshold for its 128-D descriptor
DETECTION_IOU = 0.5  # a detection finds a known face when their boxes overlap at least this much
UPSAMPLE = 1  # the HOG detector looks at the image upsampled once: faces from about 40 px are found
MIN_FACE_PIXELS = 40  # smaller faces are counted as too small for the detector, not measured


def model_folder() -> Path:
    """The folder of dlib's model files, or an ImportError that says what to install."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the privacy report needs dlib's model files: {INSTALL}")
    return Path(spec.submodule_search_locations[0]) / "models"


def box_iou(a, b) -> float:
    """Intersection over union of two xyxy boxes."""
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceAnalyzer:
    """dlib's descriptor, detector and landmarks on ``(H, W, 3)`` uint8 RGB images; boxes are xyxy pixels.

    Args:
        mmod: detect with dlib's MMOD CNN detector instead of HOG (slower: 0.1-0.3 s per crop on CPU).
        identity: ``"dlib"`` (dlib's 128-D descriptor) or the path of an ONNX face-embedding network with its
            options file (``data.identity``); ``descriptor`` and ``threshold`` follow it.
    """

    def __init__(self, mmod: bool = False, identity: "str | Path" = "dlib") -> None:
        try:
            import dlib
        except ImportError as error:
            raise ImportError(f"the privacy report needs dlib: {INSTALL}") from error
        folder = model_folder()
        paths = {name: folder / file for name, file in MODEL_FILES.items()}
        missing = [str(p) for name, p in paths.items() if not p.is_file() and (mmod or name != "mmod")]
        if missing:
            raise FileNotFoundError(f"dlib model file(s) missing: {', '.join(missing)}; reinstall: {INSTALL}")
        self.dlib = dlib
        self.mmod = mmod
        if mmod:
            self.detector = dlib.cnn_face_detection_model_v1(str(paths["mmod"]))
        else:
            self.detector = dlib.get_frontal_face_detector()
        self.shape_predictor = dlib.shape_predictor(str(paths["landmarks"]))
        self.recognizer = dlib.face_recognition_model_v1(str(paths["descriptor"]))
        self.embedding, self.threshold = None, SAME_PERSON_DISTANCE
        if identity != "dlib":
            from data.identity import load_onnx_identity

            self.embedding = load_onnx_identity(identity)
            self.threshold = self.embedding.threshold

    def _rect(self, box):
        return self.dlib.rectangle(*(int(round(float(v))) for v in box))

    def descriptor(self, image: np.ndarray, box) -> np.ndarray:
        """The identity embedding of the face in ``box`` (aligned with the 5 landmarks found in it): dlib's 128-D
        descriptor, or the ONNX network's; two faces are the same person below ``threshold``."""
        image = np.ascontiguousarray(image)
        shape = self.shape_predictor(image, self._rect(box))
        if self.embedding is not None:
            points = np.array([(shape.part(i).x, shape.part(i).y) for i in range(5)], dtype=np.float64)
            return self.embedding.embed(image, box, points)
        return np.asarray(self.recognizer.compute_face_descriptor(image, shape), dtype=np.float64)

    def detect(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Every face the detector finds, as xyxy boxes."""
        found = self.detector(np.ascontiguousarray(image), UPSAMPLE)
        rects = [d.rect for d in found] if self.mmod else list(found)
        return [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]

    def landmarks(self, image: np.ndarray, box) -> np.ndarray:
        """The 5 landmarks ``(5, 2)`` in ``box``: two corners of each eye, then the base of the nose."""
        shape = self.shape_predictor(np.ascontiguousarray(image), self._rect(box))
        return np.array([(shape.part(i).x, shape.part(i).y) for i in range(5)], dtype=np.float64)


def matching_detection(detections, box) -> tuple | None:
    """The detection that overlaps ``box`` most, if its IoU is at least ``DETECTION_IOU``."""
    best = max(detections, key=lambda d: box_iou(d, box), default=None)
    return best if best is not None and box_iou(best, box) >= DETECTION_IOU else None


def landmark_error(original: np.ndarray, anonymized: np.ndarray) -> float:
    """Mean distance between two sets of 5 landmarks, over the inter-ocular distance of ``original``."""
    eyes = original[0:2].mean(axis=0), original[2:4].mean(axis=0)
    inter_ocular = float(np.linalg.norm(eyes[0] - eyes[1]))
    return float(np.linalg.norm(original - anonymized, axis=1).mean() / max(inter_ocular, 1e-6))
