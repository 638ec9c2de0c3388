"""Replace every face of a photo with a generated one: crop the DeepPrivacy way, condition by the generator's own
box rule, generate, and paste inside the box only (``paste_face``: the one paste path, used by the anonymizer, the
privacy report and its training callback alike)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data.crop import crop_face, crop_window
from data.detections import no_keypoints
from data.keypoints import NUM_KEYPOINTS, pixel_keypoints_present
from data.obscure import blur, pixel_box
from data.record import to_float_image, to_uint8_image
from gan.conditioning import Rounding, check_rounding, condition_batch
from gan.seeding import face_seed, fixed_latents

BLUR_SIGMA_FRACTION = 1 / 4  # --blur-below: sigma of the blur that replaces a face too small to generate


@dataclass
class Report:
    """How many faces took each path."""

    generated: int = 0
    generated_without_keypoints: int = 0
    blurred: int = 0


@dataclass
class _Face:
    image: int  # index of the photo in the call
    face: int  # index of the face in its photo
    box: np.ndarray
    points: np.ndarray
    pixels: tuple[int, int, int, int]


def paste_face(out: np.ndarray, face: np.ndarray, window, pixels) -> None:
    """Paste a generated ``face`` ``(r, r, 3)`` uint8, the crop of ``window`` (square, photo pixels), into ``out``:
    resized to the window's side (PIL bicubic) and written only over ``pixels`` (the face box's whole pixels,
    clipped to the photo). Nothing outside the box changes."""
    wx0, wy0, wx1, _ = (int(v) for v in window)
    side = wx1 - wx0
    resized = np.asarray(Image.fromarray(face).resize((side, side), Image.Resampling.BICUBIC))
    x0, y0, x1, y1 = pixels
    out[y0:y1, x0:x1] = resized[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]


class Anonymizer:
    """``Anonymizer.from_export(DIR)(image, boxes, keypoints=None) -> (anonymized image, Report)``.

    image: ``(H, W, 3)`` uint8 RGB; boxes: ``(N, 4)`` face boxes (x0, y0, x1, y1) in pixels; keypoints:
    ``(N, 7, 2)`` in pixels (absent: ``data.keypoints.pixel_keypoints_present``) or None. ``many`` anonymises
    several photos with their faces generated together, ``batch_size`` faces per generator call.

    Args:
        generate: ``(condition, mask, keypoints, z) -> image`` at ``resolution`` (an export, or a network at a stage).
        resolution: the generator's input side.
        latent_shape: z's shape per face.
        box_rounding: the box rule the generator was trained with (an export's ``conditioning.box_rounding``).
        seed: None for z = 0 (DeepPrivacy's default); else each face's z is drawn from (seed, photo key, face index),
            the same whatever the batch it is generated in.
        blur_below: faces whose box is under this many pixels are blurred instead of generated.
    """

    def __init__(self, generate: Callable[..., torch.Tensor], resolution: int, latent_shape: Sequence[int],
                 box_rounding: Rounding, batch_size: int = 16, seed: int | None = None, blur_below: int = 0,
                 device: str | torch.device = "cpu") -> None:
        self.generate, self.resolution, self.latent_shape = generate, resolution, tuple(latent_shape)
        self.box_rounding = check_rounding(box_rounding)
        self.batch_size, self.seed, self.blur_below, self.device = batch_size, seed, blur_below, device

    @classmethod
    def for_generator(cls, generator, **kwargs) -> "Anonymizer":
        """An anonymizer of a loaded export (``gan.export.load_generator`` or ``load_onnx_generator``)."""
        meta = generator.meta
        return cls(generator, meta["resolution"], meta["inputs"]["z"]["shape"][1:],
                   meta["conditioning"]["box_rounding"], **kwargs)

    @classmethod
    def from_export(cls, folder: str | Path, backend: str = "torch", **kwargs) -> "Anonymizer":
        from gan.export import load_generator, load_onnx_generator

        if backend == "torch":
            generator = load_generator(folder).to(kwargs.get("device", "cpu"))
        elif backend == "onnx":
            generator = load_onnx_generator(folder)
        else:
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        return cls.for_generator(generator, **kwargs)

    def __call__(self, image: np.ndarray, boxes, keypoints=None, key: int = 0) -> tuple[np.ndarray, Report]:
        return self.many([image], [boxes], [keypoints], [key])[0]

    def many(self, images: Sequence[np.ndarray], boxes: Sequence, keypoints: Sequence | None = None,
             keys: Sequence[int] | None = None,
             face_ids: Sequence[Sequence[int]] | None = None) -> list[tuple[np.ndarray, Report]]:
        """Anonymise several photos; ``keys`` (default: their indices) and ``face_ids`` (default: each face's index in
        its photo; a video passes track ids) seed their faces' latents."""
        keypoints = keypoints if keypoints is not None else [None] * len(images)
        keys = keys if keys is not None else range(len(images))
        results = [(image.copy(), Report()) for image in images]
        faces = []
        for index, (image, image_boxes, image_points) in enumerate(zip(images, boxes, keypoints, strict=True)):
            ids = face_ids[index] if face_ids is not None else None
            faces += self._plan(index, image, results[index], image_boxes, image_points, ids)
        for start in range(0, len(faces), self.batch_size):
            self._generate(images, results, faces[start : start + self.batch_size], list(keys))
        return results

    def _plan(self, index: int, image: np.ndarray, result, boxes, keypoints, ids=None) -> list[_Face]:
        """The faces of one photo to generate; faces under ``blur_below`` are blurred into the result right away."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if keypoints is None:
            keypoints = np.stack([no_keypoints()] * len(boxes)) if len(boxes) else np.zeros((0, NUM_KEYPOINTS, 2))
        keypoints = np.asarray(keypoints, dtype=np.float64).reshape(len(boxes), NUM_KEYPOINTS, 2)
        height, width = image.shape[:2]
        out, report = result
        planned = []
        for i, (box, points) in enumerate(zip(boxes, keypoints, strict=True)):
            pixels = pixel_box(box, width, height)
            if pixels is None:
                continue  # the box lies outside the photo: no pixel of a face to replace
            if self.blur_below and max(box[2] - box[0], box[3] - box[1]) < self.blur_below:
                x0, y0, x1, y1 = pixels
                out[y0:y1, x0:x1] = blur(image, pixels, sigma_fraction=BLUR_SIGMA_FRACTION)[y0:y1, x0:x1]
                report.blurred += 1
                continue
            report.generated += 1
            report.generated_without_keypoints += int(not pixel_keypoints_present(points).any())
            planned.append(_Face(index, i if ids is None else int(ids[i]), box, points, pixels))
        return planned

    def _latents(self, faces: list[_Face], keys: list[int]) -> torch.Tensor:
        shape = (len(faces), *self.latent_shape)
        if self.seed is None:
            return torch.zeros(shape)
        return torch.cat([fixed_latents((1, *self.latent_shape), face_seed(self.seed, keys[f.image], f.face))
                          for f in faces])

    @torch.no_grad()
    def _generate(self, images, results, faces: list[_Face], keys: list[int]) -> None:
        crops, norm_boxes, norm_points, windows = [], [], [], []
        for f in faces:
            height, width = images[f.image].shape[:2]
            window = crop_window(f.box, width, height)
            crop, nbox, npoints = crop_face(images[f.image], f.box, f.points, window, size=self.resolution)
            crops.append(crop), norm_boxes.append(nbox), norm_points.append(npoints), windows.append(window)
        image_t = to_float_image(torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).to(self.device))
        box_t = torch.from_numpy(np.stack(norm_boxes)).to(self.device)
        points_t = torch.from_numpy(np.stack(norm_points)).to(self.device)
        conditioned = condition_batch(image_t, box_t, points_t, self.resolution, self.box_rounding)
        z = self._latents(faces, keys).to(self.device)
        fake = self.generate(conditioned.condition, conditioned.mask, conditioned.keypoints, z)
        generated = to_uint8_image(fake.float()).permute(0, 2, 3, 1).cpu().numpy()
        for face, window, f in zip(generated, windows, faces, strict=True):
            paste_face(results[f.image][0], face, window, f.pixels)
