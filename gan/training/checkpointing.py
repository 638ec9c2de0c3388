"""Checkpoints by images seen: every N images, before every growth, at the end and on SIGTERM; and the choice
of the checkpoint a run resumes from.

What a checkpoint holds and how it is loaded offline: ``gan.checkpoint``.

Writing (rank 0 renames; every rank takes part in Lightning's collective save):
1. the checkpoint is written to ``images=<n>.ckpt.tmp`` and flushed to disk;
2. its sha256 goes to ``images=<n>.ckpt.sha256`` (``sha256sum -c`` format), written atomically;
3. the temporary file is renamed: a checkpoint file that exists is complete;
4. ``last.ckpt`` (a hard link to the newest) and its own ``last.ckpt.sha256`` are replaced;
5. only the newest ``keep_last`` periodic files (and their checksums) are kept.
A kill at any point leaves every earlier checkpoint intact, and at worst a newest file whose checksum does not
match (it is then skipped on resume, never deleted). A save that fails (a full disk, a lost mount) removes its
temporary file and stops the run with ``CheckpointWriteError``.

Resuming from ``last`` (``resume_candidates``, ``verify``): ``last.ckpt``, then the ``images=<n>.ckpt`` files
from the newest; the first one whose checksum matches and whose metadata loads is taken, and every file
skipped is named in one line with the reason.
"""

import errno
import hashlib
import os
import re
import shutil
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

NAME = re.compile(r"^images=(\d+)\.ckpt$")
CHECKSUM_SUFFIX = ".sha256"


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the message names the file and says that earlier ones are intact."""


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify(path: Path) -> str | None:
    """Why the checkpoint at ``path`` is damaged (None if it is whole).

    A file with a checksum file must match it (a truncated or damaged file does not); a file without one (written
    before checksums were) must load completely. Whether this run can resume it is a separate question
    (``gan.checkpoint.check_resumable``).
    """
    if not path.exists():
        return "a link to a missing file" if path.is_symlink() else "missing"
    if not path.is_file():
        return "not a file"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    checksum = checksum_path(path)
    has_checksum = checksum.is_file()
    if has_checksum:
        expected = checksum.read_text().split()[:1]
        if not expected or sha256_file(path) != expected[0]:
            return f"its sha256 differs from {checksum.name}: the file is damaged or incomplete"
    try:  # mmap: with a verified checksum only the metadata is read; without one, every tensor is touched
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if not has_checksum:
            for tensor in checkpoint.get("state_dict", {}).values():
                if torch.is_tensor(tensor):
                    tensor.sum()
    except Exception as error:  # noqa: BLE001 - whatever makes a file unreadable is the reason, in one line
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"unreadable: {type(error).__name__}: {first_line}"
    return None


def set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint (and its checksum file) to ``<name>.damaged``, so that neither resuming nor
    pruning picks it again; nothing is deleted."""
    aside = path.with_name(path.name + ".damaged")
    os.replace(path, aside)
    if checksum_path(path).is_file():
        os.replace(checksum_path(path), checksum_path(aside))
    return aside


def resume_candidates(dirpath: Path) -> list[Path]:
    """``last.ckpt`` first, then the ``images=<n>.ckpt`` files from the newest."""
    found = sorted(((int(m.group(1)), p) for p in dirpath.glob("images=*.ckpt") if (m := NAME.match(p.name))),
                   reverse=True)
    last = dirpath / "last.ckpt"
    return ([last] if last.exists() or last.is_symlink() else []) + [path for _, path in found]


def check_writable(dirpath: Path, needed_bytes: int) -> None:
    """Raise CheckpointWriteError naming ``dirpath`` if a checkpoint of ``needed_bytes`` cannot be written there."""
    try:
        dirpath.mkdir(parents=True, exist_ok=True)
        probe = dirpath / f".write-test-{os.getpid()}"
        probe.write_bytes(b"0")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or error
        raise CheckpointWriteError(f"checkpoint.dirpath: cannot write to {dirpath} ({reason})") from None
    free = shutil.disk_usage(dirpath).free
    if free < needed_bytes:
        raise CheckpointWriteError(
            f"checkpoint.dirpath: {dirpath} has {free / 2**20:.0f} MiB free; one checkpoint of this model needs "
            f"about {needed_bytes / 2**20:.0f} MiB")


class ImageCheckpoint(pl.Callback):
    """Args:
    dirpath: folder of the run's checkpoints (``last.ckpt`` and ``images=<n>.ckpt``, each with a ``.sha256``).
    every_images: save after every this many images (0: only at growth, end and SIGTERM).
    keep_last: how many ``images=<n>.ckpt`` files to keep (the newest).
    """

    def __init__(self, dirpath: str = "checkpoints/run", every_images: int = 1_000_000, keep_last: int = 3) -> None:
        if every_images < 0 or keep_last < 1:
            raise ValueError("checkpoint.every_images must be >= 0 and checkpoint.keep_last >= 1")
        self.dirpath = Path(dirpath)
        self.every_images = every_images
        self.keep_last = keep_last
        self.last_saved: int | None = None

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def save(self, trainer: pl.Trainer, images_seen: int) -> Path:
        """Write ``images=<images_seen>.ckpt`` atomically with its checksum (collective under DDP) and point
        last.ckpt at it; CheckpointWriteError if the file system refuses."""
        path = self.dirpath / f"images={images_seen:011d}.ckpt"
        tmp = path.with_name(path.name + ".tmp")
        try:
            trainer.save_checkpoint(tmp, weights_only=False)  # full state: optimizers, loops, scaler
            if trainer.is_global_zero:
                self._publish(tmp, path)
        except OSError as error:
            if trainer.is_global_zero:
                tmp.unlink(missing_ok=True)
            raise CheckpointWriteError(
                f"could not write checkpoint {path} ({error.strerror or error}); the earlier checkpoints in "
                f"{self.dirpath} are intact: make room and resume with --ckpt_path last") from None
        trainer.strategy.barrier("ImageCheckpoint.save")
        self.last_saved = images_seen
        return path

    def _publish(self, tmp: Path, path: Path) -> None:
        fsync_file(tmp)
        digest = sha256_file(tmp)
        write_atomically(checksum_path(path), f"{digest}  {path.name}\n")
        os.replace(tmp, path)
        link = self.last_path.with_name("last.ckpt.tmp")
        link.unlink(missing_ok=True)
        try:
            os.link(path, link)
        except OSError as error:  # a file system without hard links: a copy
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            shutil.copyfile(path, link)
        write_atomically(checksum_path(self.last_path), f"{digest}  last.ckpt\n")
        os.replace(link, self.last_path)
        self._prune()
        dir_fd = os.open(self.dirpath, os.O_RDONLY)  # the renames themselves reach the disk
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _prune(self) -> None:
        found = sorted((int(m.group(1)), p) for p in self.dirpath.glob("images=*.ckpt") if (m := NAME.match(p.name)))
        for _, path in found[: -self.keep_last]:
            path.unlink()
            checksum_path(path).unlink(missing_ok=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        progress = pl_module.progress
        if progress.crossed(self.every_images) or progress.grew or progress.finished:
            self.save(trainer, progress.after)
        if trainer.received_sigterm and trainer.world_size == 1:
            raise SIGTERMException()  # under DDP Lightning raises it on every rank at the next step

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            seen = int(pl_module.images_seen)
            if self.last_saved != seen and seen > 0:
                self.save(trainer, seen)
