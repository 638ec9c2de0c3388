"""The SafeFakes checkpoint format: what a checkpoint holds beside Lightning's own state, and how it is
loaded for resuming, evaluation, export and fine-tuning.

Lightning writes the model's ``state_dict``, the optimizers, the loops and the hyper-parameters; SafeFakes
adds a ``safefakes`` entry: ``format_version``, ``kind`` (``training``: a full Lightning checkpoint;
``weights``: G, G_ema and maybe D only, the ``model.init_from`` of a new run), ``images_seen`` (the whole
RNG state: every random stream is derived from it), the stage and the resolved run configuration.
The generator's architecture and constants are read from the hyper-parameters.

Versions: 2 records the equalized-lr gains and PixelNorm's eps as hyper-parameters (the paper's sqrt(2)
gains are the default). Version 1 checkpoints were trained with gain 1.0 on to_rgb and on the critic's
output layer: they load for evaluation and export with those constants, and resume only with them.
Every load uses ``torch.load(weights_only=True)``: nothing in a checkpoint can run code.
"""

import math
from pathlib import Path

import torch

from gan.discriminator import Discriminator
from gan.generator import Generator

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
KEY = "safefakes"
# The constants of format-1 checkpoints (before the paper's gains became the default).
V1_CONSTANTS = {"to_rgb_gain": 1.0, "critic_output_gain": 1.0, "pixel_norm_eps": 1e-8}
PAPER_CONSTANTS = {"to_rgb_gain": math.sqrt(2.0), "critic_output_gain": math.sqrt(2.0), "pixel_norm_eps": 1e-8}


def checkpoint_metadata(images_seen: int, stage: dict, config: dict | None, kind: str = "training", **extra) -> dict:
    """The ``safefakes`` entry of a checkpoint."""
    return {"format_version": FORMAT_VERSION, "kind": kind, "images_seen": int(images_seen), "stage": stage,
            "config": config, **extra}


def check_metadata(checkpoint, where: str) -> dict:
    """The ``safefakes`` entry of ``checkpoint``, or a ValueError naming ``where`` and what is wrong."""
    meta = checkpoint.get(KEY) if isinstance(checkpoint, dict) else None
    if meta is None:
        raise ValueError(f"{where}: not a SafeFakes training checkpoint (no {KEY!r} entry)")
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise ValueError(f"{where}: SafeFakes checkpoint format version {meta.get('format_version')!r}; "
                         f"this SafeFakes reads versions {READABLE_VERSIONS}")
    return meta


def constants(meta: dict, hparams: dict) -> dict:
    """to_rgb_gain, critic_output_gain and pixel_norm_eps of the networks a checkpoint holds."""
    if meta["format_version"] == 1:
        return dict(V1_CONSTANTS)
    return {name: hparams[name] for name in V1_CONSTANTS}


# What a resumed run must share with its checkpoint: the networks' shapes and the growth schedule (only
# total_images may grow or shrink).
ARCHITECTURE_KEYS = ("base_width", "latent_channels", "minibatch_std")
SCHEDULE_KEYS = ("start_resolution", "max_resolution", "fade_images", "stabilize_images", "batch_sizes")


def check_resumable(checkpoint: dict, hparams) -> None:
    """Refuse to resume a checkpoint into networks of another architecture, schedule or constants, in one line that
    says what to set."""
    meta = check_metadata(checkpoint, "the checkpoint to resume from")
    saved_hparams = checkpoint.get("hyper_parameters", {})
    saved_schedule, schedule = saved_hparams.get("schedule", {}), hparams["schedule"]
    differ = [(f"model.{k}", saved_hparams[k], hparams[k]) for k in ARCHITECTURE_KEYS
              if k in saved_hparams and saved_hparams[k] != hparams[k]]
    differ += [(f"model.schedule.{k}", saved_schedule[k], schedule[k]) for k in SCHEDULE_KEYS
               if k in saved_schedule and saved_schedule[k] != schedule[k]]
    if differ:
        raise ValueError("the checkpoint was trained with " + ", ".join(
            f"{key} = {saved} (this run has {ours})" for key, saved, ours in differ)
            + ": resume with the checkpoint's settings, or start a new run in another checkpoint.dirpath")
    saved = constants(meta, checkpoint.get("hyper_parameters", {}))
    differ = {name: value for name, value in saved.items() if not math.isclose(float(hparams[name]), value)}
    if differ:
        flags = " ".join(f"--model.{name} {value}" for name, value in saved.items())
        raise ValueError(
            f"the checkpoint to resume from (format {meta['format_version']}) was trained with {saved}; the model is "
            f"built with { {name: hparams[name] for name in saved} }: resume with {flags}, or start a new run"
        )


def generator_from_hparams(hparams: dict, meta: dict) -> Generator:
    """An untrained generator of the architecture and constants a checkpoint describes."""
    c = constants(meta, hparams)
    return Generator(hparams["base_width"], hparams["schedule"]["max_resolution"], hparams["latent_channels"],
                     c["to_rgb_gain"], c["pixel_norm_eps"])


def load_checkpoint_file(path: str | Path) -> dict:
    """A SafeFakes checkpoint (training or weights), unpickled safely (``weights_only=True``); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    check_metadata(checkpoint, str(path))
    return checkpoint



def ema_generator_from_checkpoint(path: str | Path) -> tuple[Generator, dict]:
    """(the EMA generator in eval mode, the checkpoint's ``safefakes`` metadata), loaded strictly."""
    checkpoint = load_checkpoint_file(path)
    hparams, meta = checkpoint["hyper_parameters"], checkpoint[KEY]
    generator = generator_from_hparams(hparams, meta)
    generator.load_state_dict(submodule_state(checkpoint["state_dict"], "G_ema"), strict=True)
    return generator.requires_grad_(False).eval(), {**meta, "hyper_parameters": hparams}


def submodule_state(state: dict, name: str) -> dict:
    prefix = name + "."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def save_weights(path: str | Path, generator: Generator, ema: Generator, critic: Discriminator | None,
                 images_seen: int, source: dict) -> Path:
    """A ``weights`` checkpoint: G, G_ema and (if given) D with the hyper-parameters that rebuild them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"G.{k}": v for k, v in generator.state_dict().items()}
    state.update({f"G_ema.{k}": v for k, v in ema.state_dict().items()})
    if critic is not None:
        state.update({f"D.{k}": v for k, v in critic.state_dict().items()})
    hparams = {"base_width": generator.base_width, "latent_channels": generator.latent_channels,
               "schedule": {"max_resolution": generator.max_resolution},
               "to_rgb_gain": generator.to_rgb_gain, "pixel_norm_eps": generator.pixel_norm_eps,
               "critic_output_gain": critic.output_gain if critic is not None else PAPER_CONSTANTS["critic_output_gain"],
               "minibatch_std": bool(critic is not None and critic.final.minibatch_std is not None)}
    stage = {"resolution": generator.max_resolution, "alpha": 1.0}
    meta = checkpoint_metadata(images_seen, stage, None, kind="weights", has_critic=critic is not None, source=source)
    torch.save({KEY: meta, "hyper_parameters": hparams, "state_dict": state}, path)
    return path


def check_initial_weights(module, path: str | Path) -> dict:
    """The checkpoint at ``path`` if the module's architecture and constants are those of the file; else a
    ValueError naming the keys to set."""
    checkpoint = load_checkpoint_file(path)
    meta, saved = checkpoint[KEY], checkpoint["hyper_parameters"]
    ours = module.hparams
    expected = {"base_width": saved["base_width"], "latent_channels": saved["latent_channels"],
                "schedule.max_resolution": saved["schedule"]["max_resolution"], **constants(meta, saved)}
    actual = {"base_width": ours["base_width"], "latent_channels": ours["latent_channels"],
              "schedule.max_resolution": module.schedule.max_resolution,
              **{name: ours[name] for name in V1_CONSTANTS}}
    differ = [f"model.{k}: {expected[k]} (the run has {actual[k]})" for k in expected
              if not math.isclose(float(actual[k]), float(expected[k]))]
    if differ:
        raise ValueError(f"model.init_from {path}: set " + "; ".join(differ))
    return checkpoint


def load_initial_weights(module, path: str | Path) -> None:
    """Load a checkpoint's G, G_ema (and D, if it holds one) into a LightningModule, strictly."""
    checkpoint = check_initial_weights(module, path)
    meta, state = checkpoint[KEY], checkpoint["state_dict"]
    module.G.load_state_dict(submodule_state(state, "G"), strict=True)
    module.G_ema.load_state_dict(submodule_state(state, "G_ema"), strict=True)
    if meta.get("has_critic", True):
        module.D.load_state_dict(submodule_state(state, "D"), strict=True)
