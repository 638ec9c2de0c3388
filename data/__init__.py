"""Face data for SafeFakes: the data contract, FDF readers, the prepared format, crops, augmentation and
detections. The bottom layer: it imports nothing from ``gan``.

Every reader yields ``FaceRecord``s; ``data.sources.open_dataset(path, split)`` picks the reader from the files
at ``path``. The keypoint convention is ``data.keypoints``.
"""

from data.record import DataError, FaceBatch, FaceRecord

__all__ = ["DataError", "FaceBatch", "FaceRecord"]
