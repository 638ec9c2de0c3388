"""Identity models for the privacy report: a face in a known box -> an embedding, compared by euclidean distance
against a same-person threshold. ``--identity dlib`` (default) or ``--identity onnx:PATH``.

- ``dlib``: ``dlib_face_recognition_resnet_model_v1`` (128-D, aligned by dlib's 5-point landmarks; same person
  below 0.6, 99.38 % on LFW). Its models ship with ``face-recognition-models`` (public domain).
- ``onnx:PATH``: any face-embedding network in ONNX (ArcFace-, FaceNet-style), one input ``(1, 3, H, W)`` float
  and one output ``(1, D)``. Its options live in ``PATH`` with ``.json`` for its suffix (``model.onnx`` ->
  ``model.json``)::

      {"threshold": 1.24,                  same person below this distance (required: it is the model's own)
       "input_size": 112,                  the network's input side (square)
       "alignment": "arcface",             "arcface": the 5-point template of insightface's 112 x 112 crops, fitted
                                           by a similarity transform to the eye centres and nose of dlib's 5-point
                                           landmarks (no mouth corners: a 3-point fit); "box": the known box, resized
       "mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5],   per channel, on 0-255 values
       "channels": "RGB",                  or "BGR" (insightface's own models take BGR)
       "l2_normalize": true}               divide the output by its norm before distances (ArcFace's convention)

  Only ``threshold`` is required. Real networks (insightface's ArcFace ``w600k_r50.onnx``, FaceNet exports) are
  downloaded by the user: their weights carry their own licences (insightface's are for non-commercial research),
  which are the user's to check; nothing here downloads or ships one.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# insightface's 112 x 112 ArcFace template: left eye, right eye (of the image), nose tip, mouth corners.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]])
DEFAULTS = {"input_size": 112, "alignment": "arcface", "mean": [127.5] * 3, "std": [127.5] * 3, "channels": "RGB",
            "l2_normalize": True}


class IdentityError(ValueError):
    """An identity model that cannot be used; the message names the file and the option."""


@dataclass
class OnnxIdentity:
    """A face-embedding network in onnxruntime, with the options of its JSON file."""

    path: Path
    threshold: float
    input_size: int
    alignment: str
    mean: np.ndarray
    std: np.ndarray
    channels: str
    l2_normalize: bool

    def __post_init__(self) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def crop(self, image: np.ndarray, box, landmarks: np.ndarray | None) -> np.ndarray:
        """The network's input crop ``(S, S, 3)`` uint8 of the face in ``box``."""
        size = self.input_size
        if self.alignment == "box" or landmarks is None:
            x0, y0, x1, y1 = (float(v) for v in box)
            return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR,
                                                            box=(x0, y0, x1, y1)))
        from skimage.transform import SimilarityTransform

        # dlib's 5 points: two corners of each eye, then the base of the nose.
        eyes = sorted([landmarks[0:2].mean(axis=0), landmarks[2:4].mean(axis=0)], key=lambda p: p[0])
        source = np.array([eyes[0], eyes[1], landmarks[4]])
        target = ARCFACE_TEMPLATE[:3] * (size / 112.0)
        transform = SimilarityTransform.from_estimate(target, source)  # output pixels -> photo pixels
        a, b, c = transform.params[0]
        d, e, f = transform.params[1]
        return np.asarray(Image.fromarray(image).transform((size, size), Image.Transform.AFFINE, (a, b, c, d, e, f),
                                                           resample=Image.Resampling.BILINEAR))

    def embed(self, image: np.ndarray, box, landmarks: np.ndarray | None) -> np.ndarray:
        crop = self.crop(image, box, landmarks).astype(np.float32)
        if self.channels == "BGR":
            crop = crop[..., ::-1]
        x = ((crop - self.mean) / self.std).transpose(2, 0, 1)[None].astype(np.float32)
        (out,) = self.session.run(None, {self.input: np.ascontiguousarray(x)})
        vector = np.asarray(out, dtype=np.float64).reshape(-1)
        if self.l2_normalize:
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return vector


def read_options(path: str | Path) -> dict:
    """The checked options of the network at ``path`` (its JSON file), as ``OnnxIdentity``'s fields."""
    path = Path(path)
    if not path.is_file():
        raise IdentityError(f"{path}: no such ONNX file (--identity onnx:PATH names a face-embedding network)")
    options_file = path.with_suffix(".json")
    if not options_file.is_file():
        raise IdentityError(f"{options_file}: missing; it holds the network's options, at least its same-person "
                            'threshold, e.g. {"threshold": 1.24} (see data/identity.py)')
    try:
        given = json.loads(options_file.read_text())
    except json.JSONDecodeError as error:
        raise IdentityError(f"{options_file}: not valid JSON: {error}") from None
    unknown = sorted(set(given) - set(DEFAULTS) - {"threshold"})
    if not isinstance(given, dict) or "threshold" not in given or unknown:
        raise IdentityError(f"{options_file}: needs 'threshold'; known options are threshold, "
                            f"{', '.join(DEFAULTS)}" + (f"; unknown: {unknown}" if unknown else ""))
    options = {**DEFAULTS, **given}
    if options["alignment"] not in ("arcface", "box") or options["channels"] not in ("RGB", "BGR"):
        raise IdentityError(f"{options_file}: alignment must be 'arcface' or 'box', channels 'RGB' or 'BGR'")
    try:
        threshold, size = float(options["threshold"]), int(options["input_size"])
        mean, std = (np.asarray(options[k], dtype=np.float32).reshape(3) for k in ("mean", "std"))
    except (TypeError, ValueError) as error:
        raise IdentityError(f"{options_file}: threshold, input_size, mean (3) and std (3) must be numbers: "
                            f"{error}") from None
    if threshold <= 0 or size < 8 or (std <= 0).any():
        raise IdentityError(f"{options_file}: threshold and std must be > 0 and input_size >= 8")
    return {"threshold": threshold, "input_size": size, "alignment": options["alignment"], "mean": mean, "std": std,
            "channels": options["channels"], "l2_normalize": bool(options["l2_normalize"])}


def load_onnx_identity(path: str | Path) -> OnnxIdentity:
    return OnnxIdentity(Path(path), **read_options(path))


def parse_identity(spec: str) -> str | Path:
    """``"dlib"`` or the path of ``"onnx:PATH"``; anything else is an error naming the choices."""
    if spec == "dlib":
        return spec
    if spec.startswith("onnx:") and len(spec) > 5:
        return Path(spec[5:])
    raise IdentityError(f"--identity must be 'dlib' or 'onnx:PATH', got {spec!r}")
