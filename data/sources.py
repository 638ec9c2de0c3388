"""Open any supported dataset folder by what it holds."""

from pathlib import Path

from torch.utils.data import Dataset

from data.fdf import DeepPrivacyLayoutDataset, FDFDataset, Split
from data.prepared import PreparedDataset
from data.record import DataError, FaceRecord


def open_dataset(path: str | Path, split: Split = "train") -> Dataset[FaceRecord]:
    """A prepared folder (``manifest.json``), the official FDF release (``fdf_metainfo.json``) or
    DeepPrivacy's layout (``<split>/landmarks.npy``). ``split`` is ignored for a prepared folder."""
    root = Path(path)
    if not root.is_dir():
        raise DataError("missing_dataset", str(root), "no such directory")
    if (root / "manifest.json").is_file():
        return PreparedDataset(root)
    if (root / "fdf_metainfo.json").is_file():
        return FDFDataset(root, split)
    if (root / split / "landmarks.npy").is_file():
        return DeepPrivacyLayoutDataset(root, split)
    raise DataError(
        "unknown_format",
        str(root),
        f"expected manifest.json (prepared), fdf_metainfo.json (FDF release) or {split}/landmarks.npy "
        "(DeepPrivacy layout)",
    )


class CheckedRecords(Dataset):
    """Wraps a dataset so that a bad sample comes back as its ``DataError`` instead of raising."""

    def __init__(self, dataset: Dataset[FaceRecord]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> FaceRecord | DataError:
        try:
            return self.dataset[index]
        except DataError as error:
            return error


def _identity(item):
    return item


def iterate_checked(dataset: Dataset[FaceRecord], num_workers: int = 0):
    """Yield every sample of ``dataset`` in order, a ``DataError`` in place of each bad one; decoded in workers."""
    from torch.utils.data import DataLoader

    loader = DataLoader(
        CheckedRecords(dataset), batch_size=None, num_workers=num_workers, collate_fn=_identity,
        prefetch_factor=16 if num_workers else None,
    )
    yield from loader
