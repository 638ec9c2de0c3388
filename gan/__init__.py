"""SafeFakes: training toolkit for the DeepPrivacy face-anonymization GAN.

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

from gan.discriminator import Discriminator
from gan.export import load_generator
from gan.generator import Generator
from gan.keypoints import FLIP_PERMUTATION, KEYPOINT_NAMES, NUM_KEYPOINTS, keypoint_maps

__all__ = [
    "Discriminator",
    "FLIP_PERMUTATION",
    "Generator",
    "KEYPOINT_NAMES",
    "NUM_KEYPOINTS",
    "keypoint_maps",
    "load_generator",
]
