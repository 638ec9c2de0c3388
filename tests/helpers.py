"""Callbacks that tests put into a training run through its config (``trainer.callbacks``)."""

import errno
import io
import os
import time
from pathlib import Path

import pytorch_lightning as pl
import torch


class InterruptAt(pl.Callback):
    """Behave as if SIGTERM arrived once ``images_seen`` reaches ``images``."""

    def __init__(self, images: int) -> None:
        self.images = images

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if int(pl_module.images_seen) >= self.images:
            trainer._signal_connector.received_sigterm = True


class DumpWeights(pl.Callback):
    """At the end of training each rank saves its flattened G, D and G_ema weights to ``folder/rank<k>.pt``."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_end(self, trainer, pl_module) -> None:
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        weights = {name: torch.cat([p.detach().flatten() for p in getattr(pl_module, name).parameters()])
                   for name in ("G", "D", "G_ema")}
        weights["images_seen"] = pl_module.images_seen.clone()
        torch.save(weights, Path(self.folder) / f"rank{trainer.global_rank}.pt")


class PoisonCritic(pl.Callback):
    """Make the critic output NaN from the first step on: every gradient becomes non-finite."""

    def on_train_start(self, trainer, pl_module) -> None:
        with torch.no_grad():
            pl_module.D.final.linear.weight[0, 0] = float("nan")


class RecordCalls(pl.Callback):
    """Keep (images_seen, positional arguments) of every call of ``pl_module.<network>`` (``G`` or ``D``)."""

    calls: dict[str, list] = {}  # by network name: the callback object itself is rebuilt by the CLI

    def __init__(self, network: str) -> None:
        self.network = network
        RecordCalls.calls[network] = []

    def on_train_start(self, trainer, pl_module) -> None:
        module = getattr(pl_module, self.network)
        forward, record = module.forward, RecordCalls.calls[self.network]

        def recorded(*args, **kwargs):
            record.append((int(pl_module.images_seen), [a.detach().clone() for a in args if torch.is_tensor(a)],
                           kwargs))
            return forward(*args, **kwargs)

        module.forward = recorded


class PoisonOnce(pl.Callback):
    """The critic's scores are NaN on its ``call``-th call (counting from 0), finite otherwise."""

    def __init__(self, call: int) -> None:
        self.call = call

    def on_train_start(self, trainer, pl_module) -> None:
        forward, count = pl_module.D.forward, [0]

        def poisoned(*args, **kwargs):
            out = forward(*args, **kwargs)
            count[0] += 1
            return out * float("nan") if count[0] - 1 == self.call else out

        pl_module.D.forward = poisoned


class CountHostReads(pl.Callback):
    """Count the calls that read a tensor's value on the host (``item``, ``bool``, ``int``, ``float``, ``tolist``)
    during training step ``batch_idx`` (hooks around it included), each named by the innermost gan function."""

    reads: list[str] = []
    METHODS = ("item", "__bool__", "__int__", "__float__", "__index__", "tolist")

    def __init__(self, batch_idx: int) -> None:
        self.batch_idx = batch_idx
        self.saved: dict = {}
        CountHostReads.reads = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx != self.batch_idx:
            return
        import traceback

        for name in self.METHODS:
            original = getattr(torch.Tensor, name)
            self.saved[name] = original

            def counted(tensor, *args, _original=original, _name=name, **kwargs):
                frame = next((f for f in reversed(traceback.extract_stack()[:-1]) if "/gan/" in f.filename), None)
                CountHostReads.reads.append(f"{_name} in {frame.name}" if frame else f"{_name} outside gan")
                return _original(tensor, *args, **kwargs)

            setattr(torch.Tensor, name, counted)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for name, original in self.saved.items():
            setattr(torch.Tensor, name, original)
        self.saved = {}


class CompileLog(pl.Callback):
    """With ``backend`` as ``DeepPrivacyGAN.compile_backend``: every graph torch.compile builds, as (resolution,
    phase, images seen, network, grad mode) of the step that built it; the graph runs eagerly."""

    compiles: list[tuple[int, str, int, str, bool]] = []
    _step: tuple[int, str, int] | None = None

    def __init__(self) -> None:
        CompileLog.compiles = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        stage = pl_module.stage
        CompileLog._step = (stage.resolution, stage.phase, pl_module.images_seen_host)

    @staticmethod
    def backend(graph_module, example_inputs):
        names = " ".join(node.name for node in graph_module.graph.nodes)
        network = "G" if "encoder" in names else "D"
        CompileLog.compiles.append((*CompileLog._step, network, torch.is_grad_enabled()))
        return graph_module.forward


class RecordProgress(pl.Callback):
    """After every batch, ``path`` holds the images seen (replaced atomically, by rank 0): what a killed run had
    trained."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(f"{pl_module.images_seen_host}\n")
        os.replace(tmp, self.path)


class SlowSteps(pl.Callback):
    """Each training step takes ``seconds`` longer, so that a kill can land anywhere in a short run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        time.sleep(self.seconds)


def serialized(checkpoint: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


class SlowDisk(pl.Callback):
    """Checkpoint files are written in 8 chunks over ``seconds`` (a slow or network disk); ``marker`` exists while
    one is being written, so that a kill can be aimed at a save in progress."""

    def __init__(self, seconds: float, marker: str) -> None:
        self.seconds = seconds
        self.marker = Path(marker)

    def setup(self, trainer, pl_module, stage: str) -> None:
        def save_checkpoint(checkpoint, path, storage_options=None):
            data = serialized(checkpoint)
            self.marker.touch()
            with open(path, "wb") as file:
                for i in range(8):
                    file.write(data[i * len(data) // 8: (i + 1) * len(data) // 8])
                    file.flush()
                    time.sleep(self.seconds / 8)
            self.marker.unlink()

        trainer.strategy.checkpoint_io.save_checkpoint = save_checkpoint


class FullDisk(pl.Callback):
    """The disk fills up during save number ``after + 1`` (counting from 1): half the file is written, then the
    write fails with ENOSPC, as on a full disk."""

    def __init__(self, after: int) -> None:
        self.after = after

    def setup(self, trainer, pl_module, stage: str) -> None:
        calls = [0]

        def save_checkpoint(checkpoint, path, storage_options=None):
            calls[0] += 1
            data = serialized(checkpoint)
            with open(path, "wb") as file:
                if calls[0] > self.after:
                    file.write(data[: len(data) // 2])
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
                file.write(data)

        trainer.strategy.checkpoint_io.save_checkpoint = save_checkpoint
