"""The training command line: LightningCLI plus the checks that run before any heavy work."""

import logging
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml
from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback
from pytorch_lightning.strategies import DDPStrategy

from gan.checkpoint import KEY, check_initial_weights, check_resumable
from gan.training.callbacks import FIDCallback, PrivacyCallback, SampleGrids
from gan.training.checkpointing import (
    CheckpointWriteError,
    ImageCheckpoint,
    check_writable,
    resume_candidates,
    set_aside,
    verify,
)
from gan.training.datamodule import FaceDataModule
from gan.training.module import DeepPrivacyGAN
from gan.training.progress import ImageProgressBar

USAGE = ("usage: python train.py --config configs/demo.yaml   (the demo: CPU, a few minutes; build its data with "
         "python -m data.demo)\n       python train.py --config configs/deepprivacy.yaml   (the paper, on a GPU)\n"
         "       python train.py --help   (every option)")

TRAINER_DEFAULTS = {
    # The scheduled loader is one pass up to schedule.total_images and the module stops the fit there, so a finished
    # run resumed with a larger total_images trains on (in a new Lightning epoch) instead of ending at once.
    "max_epochs": -1,
    "use_distributed_sampler": False,  # the scheduled batch sampler splits every global batch across ranks
    "limit_val_batches": 0,  # sample grids and FID are driven by images seen, not by the validation loop
    "num_sanity_val_steps": 0,
    "enable_checkpointing": False,  # ImageCheckpoint (the `checkpoint` section) saves by images seen
}


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names its key."""


class RunConfig(SaveConfigCallback):
    """Lightning's config.yaml in the log folder, and the same resolved configuration (plain YAML data,
    so ``torch.load(weights_only=True)`` reads it) in every checkpoint."""

    @property
    def run_config(self) -> dict:
        return yaml.safe_load(self.parser.dump(self.config))

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.logger is None:  # no log folder (Lightning would write into the working directory)
            return
        super().setup(trainer, pl_module, stage)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint.setdefault(KEY, {})["config"] = self.run_config


def dataset_hint(key: str, path: str) -> str:
    """The command that creates the dataset a config names."""
    if "demo" in str(path):
        return "build the demo set with: python -m data.demo"
    split = "val" if key == "data.val_path" else "train"
    return (f"convert FDF with: python -m data.convert FDF_ROOT {path} --split {split}  "
            f"(or your photos: python -m data.prepare --images DIR --out {path})")


class SafeFakesCLI(LightningCLI):
    def before_instantiate_classes(self) -> None:
        """Checks that need no network or dataset built: they fail in a second, with one line."""
        config = self.config
        accelerator = str(config.trainer.accelerator)
        if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
            raise ConfigError(
                f"trainer.accelerator: {accelerator}, but no GPU was found. Train the demo on this machine "
                "(--config configs/demo.yaml) or run on the CPU with --trainer.accelerator cpu (very slow at the "
                "paper's size)"
            )
        for key, path in (("data.train_path", config.data.train_path), ("data.val_path", config.data.val_path)):
            if path is not None and not Path(path).is_dir():
                raise ConfigError(f"{key}: no dataset directory at {path}; {dataset_hint(key, path)}")

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ImageCheckpoint, "checkpoint")
        parser.add_lightning_class_args(FIDCallback, "fid")
        parser.add_lightning_class_args(SampleGrids, "samples")
        parser.add_lightning_class_args(PrivacyCallback, "privacy")
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="checkpoint to resume from, or 'last' for the newest of this run (if any)")
        parser.add_argument("--export_onnx", type=bool, default=True,
                            help="write generator.onnx next to the safetensors export at the end of training")

    def callback(self, kind: type):
        """The trainer's callback of type ``kind`` (each SafeFakes section adds one)."""
        return next(c for c in self.trainer.callbacks if isinstance(c, kind))

    @property
    def image_checkpoint(self) -> ImageCheckpoint:
        return self.callback(ImageCheckpoint)

    @property
    def run_config(self) -> dict:
        """The resolved configuration as plain data (stored in checkpoints and exports)."""
        return self.callback(RunConfig).run_config


def validate_run(cli: SafeFakesCLI) -> None:
    """Refuse a configuration that would fail later, naming the key."""
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    world = trainer.world_size
    for resolution, batch in model.schedule.batch_sizes.items():
        if batch % world:
            raise ConfigError(
                f"model.schedule.batch_sizes[{resolution}] = {batch} is not divisible by the {world} processes "
                "(trainer.devices x trainer.num_nodes)"
            )
    strategy = trainer.strategy
    # Neither setting has a public accessor on the built Trainer: the strategy keeps its DDP kwargs and the
    # accelerator connector the sampler flag (both as given to the constructor).
    if world > 1 and isinstance(strategy, DDPStrategy) and not strategy._ddp_kwargs.get("find_unused_parameters"):
        raise ConfigError(
            "trainer.strategy: use ddp_find_unused_parameters_true; the layers of the resolutions not being "
            "trained receive no gradient, which plain ddp treats as an error"
        )
    if trainer._accelerator_connector.use_distributed_sampler:
        raise ConfigError("trainer.use_distributed_sampler must be false: the scheduled batch sampler shards batches")
    if model.hparams.init_from:
        try:
            check_initial_weights(model, model.hparams.init_from)
        except (ValueError, FileNotFoundError) as error:
            raise ConfigError(f"model.init_from: {error}") from None
    try:
        check_writable(cli.image_checkpoint.dirpath, checkpoint_bytes(model))
    except CheckpointWriteError as error:
        raise ConfigError(str(error)) from None
    samples, privacy = cli.callback(SampleGrids), cli.callback(PrivacyCallback)
    for key, num, active in (("samples", samples.num, samples.every_images > 0), ("privacy", privacy.num,
                                                                                  privacy.num > 0)):
        if active and data.num_val < num:
            raise ConfigError(f"data.num_val ({data.num_val}) must be >= {key}.num ({num})")


def checkpoint_bytes(model) -> int:
    """About the size of one training checkpoint: the module's state and Adam's two moments of G's and D's weights."""
    state = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    moments = sum(2 * p.numel() * p.element_size() for network in (model.G, model.D) for p in network.parameters())
    return state + moments


def resolve_ckpt_path(cli: SafeFakesCLI) -> str | None:
    """The checkpoint to resume from, checked before any heavy work.

    'last': this run's newest checkpoint that verifies (``gan.training.checkpointing.verify``): ``last.ckpt``, else
    the ``images=<n>.ckpt`` files from the newest; each damaged file is named in one line and set aside (renamed,
    never deleted); a fresh start if the folder holds no checkpoint. A path must exist and verify. Either way the
    checkpoint's format, architecture, schedule and constants must be those of this run.
    """
    path = cli.config.ckpt_path
    if path is None:
        return None
    if path == "last":
        dirpath = cli.image_checkpoint.dirpath
        candidates = resume_candidates(dirpath)
        if not candidates:
            print(f"ckpt_path=last: no checkpoint in {dirpath} yet, starting from scratch")
            return None
        for candidate in candidates:
            reason = verify(candidate)
            if reason is None:
                path = str(candidate)
                break
            if cli.trainer.global_rank == 0:  # the others see the same files
                aside = set_aside(candidate)
                print(f"ckpt_path=last: skipped {candidate}: {reason}; kept as {aside.name}", flush=True)
        else:
            raise ConfigError(f"ckpt_path=last: no checkpoint in {dirpath} is whole (each was set aside as "
                              "<name>.damaged); to start from scratch, drop --ckpt_path or use another folder")
    else:
        if not Path(path).is_file():
            raise ConfigError(f"ckpt_path: no checkpoint file at {path}")
        reason = verify(Path(path))
        if reason is not None:
            raise ConfigError(f"ckpt_path {path}: {reason}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # mmap: the metadata is read
    try:
        check_resumable(checkpoint, cli.model.hparams)
    except ValueError as error:
        raise ConfigError(f"ckpt_path {path}: {error}") from None
    if cli.config.ckpt_path == "last" and cli.trainer.global_rank == 0:
        print(f"ckpt_path=last: resuming from {path} ({checkpoint[KEY]['images_seen']} images)", flush=True)
    return path


class QuietLightning(logging.Filter):
    """Lightning's info line that is noise here: an advertisement for a cloud logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡 Tip")


@contextmanager
def only_these_args(args: list[str] | None):
    """LightningCLI warns when given ``args`` while sys.argv holds others (pytest's): hide them meanwhile."""
    if args is None:
        yield
        return
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def build_cli(args: list[str] | None = None) -> SafeFakesCLI:
    """The parsed, checked and instantiated CLI; ConfigError for a configuration that cannot work."""
    rank_zero_logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, QuietLightning) for f in rank_zero_logger.filters):
        rank_zero_logger.addFilter(QuietLightning())
    with only_these_args(args):
        cli = SafeFakesCLI(
            DeepPrivacyGAN,
            FaceDataModule,
            run=False,
            args=args,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_callback=RunConfig,
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
        )
    callbacks = cli.trainer.callbacks  # images seen instead of batches in the progress bar
    for i, callback in enumerate(callbacks):
        # Lightning's default bar: tqdm, or rich's where rich is installed (norfair, for video, brings it).
        if type(callback) in (TQDMProgressBar, RichProgressBar):
            callbacks[i] = ImageProgressBar()
    return cli
