"""The keypoint convention of DeepPrivacy (Hukkelås et al., ISVC 2019): 7 sparse points per face.

This is the data contract that every reader, augmentation, detector and network shares:
names and order (COCO; "left" is the subject's left), the permutation a horizontal flip applies,
and the rule for an absent point, normalised (``keypoints_present``) and in photo pixels (``pixel_keypoints_present``).
"""

import numpy as np
import torch

# COCO order; "left" is the subject's left. The FDF README names the same indices from the viewer's side.
KEYPOINT_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder")
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
# Index permutation that a horizontal flip applies: the subject's left becomes their right.
FLIP_PERMUTATION = (0, 2, 1, 4, 3, 6, 5)
# What a reader or detector writes for an absent point (any value outside [0, 1) means absent).
ABSENT = -1.0


def keypoints_present(keypoints: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` normalised points -> ``(...)`` bool: True where both coordinates lie in [0, 1).

    NaN compares False, so a NaN coordinate counts as absent.
    """
    inside = (keypoints >= 0) & (keypoints < 1)
    return inside.all(dim=-1)


def pixel_keypoints_present(points: np.ndarray) -> np.ndarray:
    """``(..., 2)`` points in photo pixels -> ``(...)`` bool: True where both coordinates are finite and >= 0.

    In photo pixels (detections files, detectors, the anonymizer) an absent point is any negative value or NaN;
    ``data.crop.crop_face`` turns pixels into the normalised convention above.
    """
    points = np.asarray(points, dtype=np.float64)
    return np.isfinite(points).all(axis=-1) & (points >= 0).all(axis=-1)
