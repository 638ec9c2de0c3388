"""SafeFakes: training toolkit for the DeepPrivacy face-anonymization GAN.

Three layers, each importing only from those below it:

``data``
    The data contract (``data.keypoints``, ``data.record``), readers, the prepared format, crops,
    augmentation, detections and their command-line tools. Imports neither ``gan`` nor Lightning.
``gan``
    The model: stage geometry, layers, keypoint maps, G, D, losses, EMA, conditioning, FID, checkpoint
    format, export, anonymize, evaluate. Builds on ``data``; imports no Lightning.
``gan.training``
    Training wiring: the LightningModule, the scheduled DataModule, callbacks, the CLI.

Vocabulary, used the same way in every module of ``gan`` and ``data``:

resolution
    Side length in pixels of the square images a stage works on (8, 16, ..., 128).
alpha
    Fade-in weight of the newest resolution in [0, 1]: 0 = the old (half-resolution) path only,
    1 = the new layers only.
images_seen
    Real images consumed by training so far, summed over all ranks; the one measure of progress.
condition
    ``(B, 3, H, W)`` float in [-1, 1]: the image with the face region filled with 0.
mask
    ``(B, 1, H, W)`` float, 1 = pixel to generate (inside the face box), 0 = pixel to keep.
keypoints
    ``(B, 7, 2)`` float (x, y) normalised to [0, 1) inside the crop, in ``KEYPOINT_NAMES`` order;
    a point outside [0, 1) (or NaN) is absent.
z
    ``(B, 32, 4, 4)`` spatial latent, N(0, 1).
G / D / G_ema
    Generator, discriminator and the exponential moving average of the generator.
"""

import importlib

# Imported on first use, so that ``import gan.<module>`` (and ``python -m gan.export``) loads only what it needs.
_LAZY = {
    "Discriminator": "gan.discriminator",
    "DiscriminatorConfig": "gan.discriminator",
    "Generator": "gan.generator",
    "GeneratorConfig": "gan.generator",
    "keypoint_maps": "gan.keypoints",
    "load_generator": "gan.export",
    "FLIP_PERMUTATION": "data.keypoints",
    "KEYPOINT_NAMES": "data.keypoints",
    "NUM_KEYPOINTS": "data.keypoints",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gan' has no attribute {name!r}")
