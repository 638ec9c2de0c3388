"""The SafeFakes checkpoint format: what a checkpoint holds beside Lightning's own state, and how it is
loaded for resuming, evaluation, export and fine-tuning.

Lightning writes the model's ``state_dict``, the optimizers, the loops and the hyper-parameters; SafeFakes
adds a ``safefakes`` entry: ``format_version``, ``kind`` (``training``: a full Lightning checkpoint;
``weights``: G, G_ema and maybe D only, the ``model.init_from`` of a new run), ``images_seen`` (the whole
RNG state: every random stream is derived from it), the stage and the resolved run configuration.
The networks' architecture is read from the hyper-parameters (``architecture``).

Every loader brings an older checkpoint to the current format first (``upgrade``; the versions and what
changed are in ``gan.formats``): old checkpoints load for evaluation, export and fine-tuning with their own
architecture, and resume only into networks of that architecture.
Every load uses ``torch.load(weights_only=True)``: nothing in a checkpoint can run code.
"""

import json
import math
from dataclasses import asdict
from pathlib import Path

import torch

from gan.discriminator import Discriminator, DiscriminatorConfig
from gan.formats import FORMAT_VERSION, check_version, upgrade_checkpoint
from gan.generator import Generator, GeneratorConfig

KEY = "safefakes"


def checkpoint_metadata(images_seen: int, stage: dict, config: dict | None, kind: str = "training", **extra) -> dict:
    """The ``safefakes`` entry of a checkpoint."""
    return {"format_version": FORMAT_VERSION, "kind": kind, "images_seen": int(images_seen), "stage": stage,
            "config": config, **extra}


def check_metadata(checkpoint, where: str) -> dict:
    """The ``safefakes`` entry of ``checkpoint``, or a ValueError naming ``where`` and what is wrong."""
    meta = checkpoint.get(KEY) if isinstance(checkpoint, dict) else None
    if meta is None:
        raise ValueError(f"{where}: not a SafeFakes training checkpoint (no {KEY!r} entry)")
    check_version(meta.get("format_version"), where, "checkpoint")
    return meta


def upgrade(checkpoint: dict, where: str = "the checkpoint") -> dict:
    """``checkpoint`` checked and brought to the current format in place (``gan.formats.upgrade_checkpoint``)."""
    return upgrade_checkpoint(checkpoint, check_metadata(checkpoint, where))


def generator_config(hparams: dict) -> GeneratorConfig:
    """The generator a (current-format) checkpoint describes; fields added since it was written take their
    defaults, which are what older versions built."""
    return GeneratorConfig(**hparams["generator"])


def critic_config(hparams: dict) -> DiscriminatorConfig:
    return DiscriminatorConfig(**(hparams.get("critic") or {}))


def differences(saved: dict, ours: dict, keys: list[str]) -> list[tuple[str, object, object]]:
    """``(key, saved, ours)`` for each dotted key (``generator.base_width``) whose values differ; floats are compared
    with ``math.isclose`` (YAML and JSON round-trip them)."""
    out = []
    for key in keys:
        a, b = saved, ours
        for part in key.split("."):
            a, b = (a or {}).get(part), (b or {}).get(part)
        same = math.isclose(a, b) if isinstance(a, float) and isinstance(b, float) else a == b
        if not same:
            out.append((key, a, b))
    return out


def architecture(hparams: dict, critic: bool = True) -> dict:
    """The architecture part of (current-format) hyper-parameters, every field present: what must agree."""
    out = {"generator": asdict(generator_config(hparams)),
           "schedule": {"max_resolution": hparams["schedule"]["max_resolution"]}}
    if critic:
        out["critic"] = asdict(critic_config(hparams))
    return out


def architecture_keys(arch: dict) -> list[str]:
    return [f"{section}.{field}" for section, fields in arch.items() for field in fields]


def describe_differences(differ: list[tuple[str, object, object]], what: str) -> str:
    """One line: the keys that differ, what the file has, and the flags that would match it."""
    listed = ", ".join(f"model.{key} = {saved} (this run has {ours})" for key, saved, ours in differ)
    flags = " ".join(f"--model.{key} {json.dumps(saved) if isinstance(saved, dict) else saved}"
                     for key, saved, _ in differ)
    return f"{what} was trained with {listed}: resume with {flags}, or start a new run in another checkpoint.dirpath"


# What a resumed run must share with its checkpoint: the networks and the growth schedule (only total_images may
# grow or shrink).
SCHEDULE_KEYS = ("start_resolution", "max_resolution", "fade_images", "stabilize_images", "batch_sizes")


def check_resumable(checkpoint: dict, hparams) -> None:
    """Refuse to resume a checkpoint into networks of another architecture or schedule, in one line that says what
    to set. Upgrades an older checkpoint in place first."""
    meta = upgrade(checkpoint, "the checkpoint to resume from")[KEY]
    saved = checkpoint["hyper_parameters"]
    ours = {**architecture(dict(hparams)), "schedule": hparams["schedule"]}
    keys = architecture_keys(architecture(ours)) + [f"schedule.{k}" for k in SCHEDULE_KEYS]
    differ = differences({**architecture(saved), "schedule": saved.get("schedule", {})}, ours, keys)
    if differ:
        old = f" (format {meta['upgraded_from']})" if "upgraded_from" in meta else ""
        raise ValueError(describe_differences(differ, f"the checkpoint{old}"))


def load_checkpoint_file(path: str | Path) -> dict:
    """A SafeFakes checkpoint (training or weights), unpickled safely (``weights_only=True``) and upgraded to the
    current format; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return upgrade(checkpoint, str(path))



def ema_generator_from_checkpoint(path: str | Path) -> tuple[Generator, dict]:
    """(the EMA generator in eval mode, the checkpoint's ``safefakes`` metadata), loaded strictly."""
    checkpoint = load_checkpoint_file(path)
    hparams, meta = checkpoint["hyper_parameters"], checkpoint[KEY]
    generator = Generator(generator_config(hparams), hparams["schedule"]["max_resolution"])
    generator.load_state_dict(submodule_state(checkpoint["state_dict"], "G_ema"), strict=True)
    return generator.requires_grad_(False).eval(), {**meta, "hyper_parameters": hparams}


def submodule_state(state: dict, name: str) -> dict:
    prefix = name + "."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def save_weights(path: str | Path, generator: Generator, ema: Generator, critic: Discriminator | None,
                 images_seen: int, source: dict, box_rounding: str) -> Path:
    """A ``weights`` checkpoint: G, G_ema and (if given) D with the hyper-parameters that rebuild them, and the box
    rounding they were trained with."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"G.{k}": v for k, v in generator.state_dict().items()}
    state.update({f"G_ema.{k}": v for k, v in ema.state_dict().items()})
    if critic is not None:
        state.update({f"D.{k}": v for k, v in critic.state_dict().items()})
    hparams = {"generator": asdict(generator.config), "critic": asdict(critic.config) if critic is not None else None,
               "schedule": {"max_resolution": generator.max_resolution}, "box_rounding": box_rounding}
    stage = {"resolution": generator.max_resolution, "alpha": 1.0}
    meta = checkpoint_metadata(images_seen, stage, None, kind="weights", has_critic=critic is not None, source=source)
    torch.save({KEY: meta, "hyper_parameters": hparams, "state_dict": state}, path)
    return path


def check_initial_weights(module, path: str | Path) -> dict:
    """The checkpoint at ``path`` if the module's networks are those of the file (its critic too, if it holds one);
    else a ValueError naming the keys to set."""
    checkpoint = load_checkpoint_file(path)
    has_critic = checkpoint[KEY].get("has_critic", True)
    saved = architecture(checkpoint["hyper_parameters"], critic=has_critic)
    differ = differences(saved, architecture(dict(module.hparams), critic=has_critic), architecture_keys(saved))
    if differ:
        raise ValueError(f"model.init_from {path}: set " + "; ".join(
            f"model.{key}: {value} (the run has {ours})" for key, value, ours in differ))
    return checkpoint


def load_initial_weights(module, path: str | Path) -> None:
    """Load a checkpoint's G, G_ema (and D, if it holds one) into a LightningModule, strictly."""
    checkpoint = check_initial_weights(module, path)
    meta, state = checkpoint[KEY], checkpoint["state_dict"]
    module.G.load_state_dict(submodule_state(state, "G"), strict=True)
    module.G_ema.load_state_dict(submodule_state(state, "G_ema"), strict=True)
    if meta.get("has_critic", True):
        module.D.load_state_dict(submodule_state(state, "D"), strict=True)
