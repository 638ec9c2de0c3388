"""Train DeepPrivacy: ``python train.py --config configs/deepprivacy.yaml [--trainer.devices 8] [--ckpt_path last]``.

LightningCLI builds the model, the data and the trainer from YAML (``--print_config`` shows the resolved
configuration); the run is checked before any heavy work, trained, resumable with ``--ckpt_path last``, and
its EMA generator is exported to ``<checkpoint.dirpath>/export`` when the schedule is complete.
"""

import sys
import time
import warnings

from pytorch_lightning.utilities.exceptions import SIGTERMException

from gan.export import export
from gan.training.callbacks import FIDCallback, PrivacyCallback
from gan.training.checkpointing import CheckpointWriteError
from gan.training.cli import USAGE, ConfigError, build_cli, resolve_ckpt_path, validate_run
from gan.training.progress import run_summary


def quiet_third_party_warnings() -> None:
    """Warnings a user cannot act on, each silenced narrowly (by message or by the module that raises it)."""
    # Lightning's CLI calls jsonargparse APIs that jsonargparse has deprecated (Lightning's to update).
    warnings.filterwarnings("ignore", message=r"(?s).*(was deprecated in v4|skip_none parameter|By default only one "
                            r"JsonargparseDeprecationWarning)", module="pytorch_lightning.cli")
    # Lightning's pytree helper uses a torch API that torch 2.13 deprecates.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def main(args: list[str] | None = None) -> int:
    if (sys.argv[1:] if args is None else args) == []:
        print(USAGE, file=sys.stderr)
        return 2
    quiet_third_party_warnings()
    started = time.perf_counter()
    try:
        cli = build_cli(args)
        validate_run(cli)
        ckpt_path = resolve_ckpt_path(cli)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        # weights_only=True: a checkpoint is unpickled without running code from it.
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        # 143 = 128 + SIGTERM, the status a job ended by that signal reports: schedulers requeue it.
        print(f"stopped by SIGTERM at {int(cli.model.images_seen)} images, checkpoint saved; resume with "
              f"--ckpt_path last ({cli.image_checkpoint.last_path})", file=sys.stderr)
        return 143
    except CheckpointWriteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if cli.model.training_finished and cli.trainer.is_global_zero:
        out = cli.image_checkpoint.dirpath / "export"
        export(cli.model.G_ema, out, cli.model.hparams.box_rounding, int(cli.model.images_seen), cli.run_config,
               onnx=cli.config.export_onnx)
        fid, privacy = cli.callback(FIDCallback), cli.callback(PrivacyCallback)
        logger = cli.trainer.logger
        print(run_summary(int(cli.model.images_seen), time.perf_counter() - started, fid.last,
                          fid.evaluator.name if fid.evaluator else None, privacy.last,
                          str(cli.image_checkpoint.last_path), str(out), getattr(logger, "log_dir", None)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
