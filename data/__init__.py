"""Face datasets for SafeFakes: FDF readers, the prepared format, conditioning and augmentation.

Every reader yields ``FaceRecord``s; ``open_dataset(path, split)`` picks the reader from the files at ``path``.
"""

from data.record import DataError, FaceRecord

__all__ = ["DataError", "FaceRecord"]
