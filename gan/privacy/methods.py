"""The panel of anonymization methods the privacy report compares, applied the way each is used: the classic
ones (``data.obscure``) on every box, the export through ``gan.anonymize.Anonymizer`` (so the report measures
exactly what the anonymizer writes), and the realism of each through the one FID path (``gan.fid``)."""

import numpy as np
import torch

from data.obscure import black_box, blur, pixel_box, pixelate
from data.record import FaceBatch, to_float_image
from gan.anonymize import Anonymizer

METHODS = ("original", "blur", "pixelate", "black_box", "generator_z0", "generator_random")
GENERATED = {"generator_z0": None, "generator_random": "seed"}  # method -> its latents: z = 0, or from --seed
BLUR_SIGMA_FRACTION = 1 / 8  # sigma of the Gaussian blur: an eighth of the box's longer side
PIXELATE_CELLS = 8


def anonymizers(generator, seed: int, batch_size: int = 64, device: str = "cpu") -> dict[str, Anonymizer]:
    """The export's two rows: z = 0 and random z from ``seed``."""
    return {name: Anonymizer.for_generator(generator, seed=None if z is None else seed, batch_size=batch_size,
                                           device=device) for name, z in GENERATED.items()}


CLASSIC = {"blur": lambda image, pixels: blur(image, pixels, BLUR_SIGMA_FRACTION),
           "pixelate": lambda image, pixels: pixelate(image, pixels, PIXELATE_CELLS),
           "black_box": black_box}


def obscure(image: np.ndarray, boxes, method: str) -> np.ndarray:
    """One classic method (``CLASSIC``) applied to every box (xyxy pixels) of ``image`` ``(H, W, 3)``."""
    height, width = image.shape[:2]
    out = image
    for box in boxes:
        pixels = pixel_box(box, width, height)
        if pixels is not None:
            out = CLASSIC[method](out, pixels)
    return out


def obscured(image: np.ndarray, boxes) -> dict[str, np.ndarray]:
    """The classic methods applied to every box (xyxy pixels) of ``image`` ``(H, W, 3)``."""
    return {name: obscure(image, boxes, name) for name in CLASSIC}


def anonymize_photos(photos: list[np.ndarray], boxes: list, keypoints: list, methods: dict[str, Anonymizer],
                     keys: list[int]) -> list[dict[str, np.ndarray]]:
    """Every method but ``original`` on each photo (faces at ``boxes``, xyxy pixels; ``keypoints`` in pixels):
    ``[{method: image}]``. ``keys`` seed the random latents per photo, as the anonymizer's ``--seed`` does."""
    out = [obscured(photo, photo_boxes) for photo, photo_boxes in zip(photos, boxes, strict=True)]
    for name, anonymizer in methods.items():
        for result, (image, _) in zip(out, anonymizer.many(photos, boxes, keypoints, keys), strict=True):
            result[name] = image
    return out


def anonymize_crops(batch: FaceBatch, methods: dict[str, Anonymizer]) -> dict[str, np.ndarray]:
    """Every method on a batch of face crops, each crop taken as a photo with its one face:
    ``{method: (N, S, S, 3) uint8}`` (``original`` included)."""
    originals, boxes, points = batch.as_photos()
    results = anonymize_photos(originals, boxes, points, methods, [int(i) for i in batch.index])
    out = {"original": np.stack(originals)}
    out.update({name: np.stack([r[name] for r in results]) for name in METHODS[1:]})
    return out


def method_fids(crops: dict[str, np.ndarray], extractor_name: str, device: str = "cpu", batch: int = 64) -> dict:
    """FID of each method's crops against the originals (one set of real statistics), by ``gan.fid``."""
    from gan.features import build_extractor
    from gan.fid import FIDEvaluator

    evaluator = FIDEvaluator(build_extractor(extractor_name), extractor_name)

    def batches(images):
        for start in range(0, len(images), batch):
            yield to_float_image(torch.from_numpy(images[start : start + batch]).permute(0, 3, 1, 2))

    return {name: evaluator.compare("privacy:original", batches(crops[name]), lambda: batches(crops["original"]),
                                    device) for name in METHODS}
