"""The SafeFakes training-checkpoint format: what a checkpoint holds beside Lightning's own state, and how
it is loaded for evaluation and export.

Lightning writes the model's ``state_dict``, the optimizers, the loops and the hyper-parameters; SafeFakes
adds a ``safefakes`` entry: ``format_version``, ``images_seen`` (the whole RNG state: every random stream
is derived from it), the stage and the resolved run configuration. The generator's architecture is
read from Lightning's hyper-parameters (``base_width``, ``latent_channels``, ``schedule.max_resolution``).
Every load uses ``torch.load(weights_only=True)``: nothing in a checkpoint can run code.
"""

from pathlib import Path

import torch

from gan.generator import Generator

FORMAT_VERSION = 1
KEY = "safefakes"


def checkpoint_metadata(images_seen: int, stage: dict, config: dict | None) -> dict:
    """The ``safefakes`` entry of a training checkpoint."""
    return {"format_version": FORMAT_VERSION, "images_seen": int(images_seen), "stage": stage, "config": config}


def generator_from_hparams(hparams: dict) -> Generator:
    """An untrained generator of the architecture that the module's hyper-parameters describe."""
    return Generator(hparams["base_width"], hparams["schedule"]["max_resolution"], hparams["latent_channels"])


def check_metadata(checkpoint, where: str) -> dict:
    """The ``safefakes`` entry of ``checkpoint``, or a ValueError naming ``where`` and what is wrong."""
    meta = checkpoint.get(KEY) if isinstance(checkpoint, dict) else None
    if meta is None:
        raise ValueError(f"{where}: not a SafeFakes training checkpoint (no {KEY!r} entry)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{where}: SafeFakes checkpoint format version {meta.get('format_version')!r}; "
                         f"this SafeFakes reads version {FORMAT_VERSION}")
    return meta


def load_training_checkpoint(path: str | Path) -> dict:
    """A training checkpoint, unpickled safely (``weights_only=True``); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    check_metadata(checkpoint, str(path))
    return checkpoint


def ema_generator_from_checkpoint(path: str | Path) -> tuple[Generator, dict]:
    """(the EMA generator in eval mode, the checkpoint's ``safefakes`` metadata), loaded strictly."""
    checkpoint = load_training_checkpoint(path)
    hparams = checkpoint["hyper_parameters"]
    generator = generator_from_hparams(hparams)
    prefix = "G_ema."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    generator.load_state_dict(state, strict=True)
    return generator.requires_grad_(False).eval(), {**checkpoint[KEY], "hyper_parameters": hparams}
