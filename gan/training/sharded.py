"""An anonymization job on many GPUs or machines: ``python -m gan.anonymize ... --devices N [--num-nodes M]``.

The job runs through Lightning's ``Trainer.predict`` with DDP (NCCL on GPUs, gloo on CPUs; multi-node through
Lightning's own launchers, as training does). Rank r of W takes every W-th input, from the r-th, of the sorted
list of what is left to do (photos and videos dealt separately, so both spread evenly). Nothing is padded or
repeated (no distributed sampler), and a face's latent depends only on the seed, the file's path and the face
(``Item.key``), so every output is the one a single process writes. Each rank appends to its own journal
(``.anonymize.<rank>.jsonl``; a later run reads them all, with any number of processes); at the end the ranks'
results and failures are gathered and rank 0 writes ``report.json``. Under ``--strict`` the first failure of any
rank leaves a flag file (``.anonymize.stop`` in the output folder) that every rank checks before each input, so
all of them stop and rank 0 still writes the report.
"""

import logging
import warnings

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from gan.anonymize.cli import Failed
from gan.anonymize.files import Item, Journal
from gan.anonymize.photos import Decoded, PhotoBatcher, PhotoFiles, Progress

STOP_FLAG = ".anonymize.stop"


def shard(items: list[Item], rank: int, world: int) -> list[int]:
    """The indices of ``items`` that rank ``rank`` of ``world`` anonymises (photos and videos dealt separately)."""
    photos = [i for i, item in enumerate(items) if item.kind == "photo"]
    videos = [i for i, item in enumerate(items) if item.kind == "video"]
    return sorted(photos[rank::world] + videos[rank::world])


class Shard(IterableDataset):
    """A rank's inputs, split again over its DataLoader workers: photos decoded, videos passed on as markers (they
    stream through their own reader thread in the main process). No ``__len__``: a rank with nothing to do still
    takes part in the final gather."""

    def __init__(self, items: list[Item], indices: list[int]) -> None:
        self.items, self.indices, self.photos = items, indices, PhotoFiles(items)

    def __iter__(self):
        info = get_worker_info()
        mine = self.indices if info is None else self.indices[info.id :: info.num_workers]
        for index in mine:
            if self.items[index].kind == "video":
                yield Decoded(index, None, format="video")
            else:
                yield self.photos[index]


def _identity(decoded: Decoded) -> Decoded:
    return decoded


class ShardedJob(pl.LightningModule):
    """The rank's part of ``job``: ``predict_step`` takes one decoded photo (or a video marker) at a time and the
    photo batcher generates faces of several photos together, as in a single process."""

    def __init__(self, job, todo: list[Item], workers: int) -> None:
        super().__init__()
        self.job, self.todo, self.workers = job, todo, workers
        generate = job.anonymizer.generate
        # Registered as a child so that Lightning moves it to this rank's device (the ONNX backend runs on CPU).
        self.generator = generate if isinstance(generate, nn.Module) else None

    def predict_dataloader(self) -> DataLoader:
        self.indices = shard(self.todo, self.global_rank, self.trainer.world_size)
        return DataLoader(Shard(self.todo, self.indices), batch_size=None, num_workers=self.workers,
                          collate_fn=_identity)

    def on_predict_start(self) -> None:
        job = self.job
        job.anonymizer.device = self.device
        if job.detector is not None and self.device.type != "cpu":
            job.detector = job.detector_on(str(self.device))  # face-alignment on this rank's GPU
        self.journal = Journal(job.output, job.settings(), self.global_rank)
        self.batcher = PhotoBatcher(self.todo, job.anonymizer, job.faces_of, job.output, self.journal,
                                    job.args.quality, job.fail)
        self.progress = Progress(len(self.indices), "file", job.terminal) if self.global_rank == 0 else None
        self.stop_flag = job.output / STOP_FLAG
        self.stopped: str | None = None

    def _done(self, item: Item, summary: dict | None) -> None:
        if summary is not None:
            self.job.results[item.relative] = summary
        if self.progress is not None:
            self.progress.update(1, (summary or {}).get("faces", (summary or {}).get("faces_detected", 0)))

    def _guarded(self, work) -> None:
        """Run ``work`` unless a rank has stopped the job (``--strict``); a failure here stops every rank."""
        if self.stopped is not None:
            return
        if self.stop_flag.exists():
            self.stopped = "stopped by another rank"
            return
        try:
            work()
        except Failed as error:
            self.stopped = str(error)
            self.stop_flag.write_text(self.stopped + "\n")

    def predict_step(self, decoded: Decoded, batch_idx: int) -> None:
        def work():
            if decoded.format == "video":
                self._done(self.todo[decoded.index], self.job.video(self.todo[decoded.index], self.journal))
            else:
                for item, summary in self.batcher.add(decoded):
                    self._done(item, summary)

        self._guarded(work)

    def on_predict_end(self) -> None:
        self._guarded(lambda: [self._done(item, summary) for item, summary in self.batcher.flush()])
        if self.progress is not None:
            self.progress.close()
        local = {"results": self.job.results, "failed": self.job.failed, "stopped": self.stopped}
        gathered = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(gathered, local)
        results, failed = {}, []
        for part in gathered:
            results.update(part["results"])
            failed += [f for f in part["failed"] if f not in failed]  # entries found before the launch are in all
        self.job.results, self.job.failed = results, failed
        # The first rank's own failure (not "stopped by another rank") is the one to report.
        reasons = [p["stopped"] for p in gathered if p["stopped"] and p["stopped"] != "stopped by another rank"]
        self.job.stopped = reasons[0] if reasons else None
        torch.distributed.barrier()  # every rank has read the flag before rank 0 removes it
        if self.global_rank == 0:
            self.stop_flag.unlink(missing_ok=True)


def run_sharded(job, todo: list[Item], workers: int) -> bool:
    """Anonymise ``todo`` over ``--devices`` x ``--num-nodes`` processes; True in rank 0, which then holds every
    rank's results and failures (the others return False and leave the report to it)."""
    args = job.args
    accelerator = "gpu" if str(args.device).startswith("cuda") else "cpu"
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)  # no "GPU available" / "Initializing distributed" lines
    trainer = pl.Trainer(accelerator=accelerator, devices=args.devices, num_nodes=args.num_nodes, strategy="ddp",
                         logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, use_distributed_sampler=False, inference_mode=True)
    with warnings.catch_warnings():
        # Workers are chosen by --workers (decoding only); Lightning's suggestion counts cores for training.
        warnings.filterwarnings("ignore", message=r"The 'predict_dataloader' does not have many workers")
        # predict_step writes its outputs and returns nothing, on purpose.
        warnings.filterwarnings("ignore", message=r"predict returned None")
        # Lightning's pytree helper calls an API that torch 2.13 deprecates.
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        trainer.predict(ShardedJob(job, todo, workers), return_predictions=False)
    if trainer.global_rank == 0 and job.stopped:
        raise Failed(job.stopped)  # the job's --strict path: rank 0 writes the report and exits 1
    return trainer.global_rank == 0
