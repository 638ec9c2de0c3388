"""Train DeepPrivacy: ``python train.py --config configs/deepprivacy.yaml [--trainer.devices 8] [--ckpt_path last]``.

LightningCLI builds the model, the data and the trainer from YAML (``--print_config`` shows the resolved
configuration); the run is checked before any heavy work, trained, resumable with ``--ckpt_path last``, and
its EMA generator is exported to ``<checkpoint.dirpath>/export`` when the schedule is complete.
"""

import sys

from pytorch_lightning.utilities.exceptions import SIGTERMException

from gan.export import export
from gan.training.cli import ConfigError, build_cli, resolve_ckpt_path, validate_run


def main(args: list[str] | None = None) -> int:
    cli = build_cli(args)
    try:
        validate_run(cli)
        ckpt_path = resolve_ckpt_path(cli)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        # weights_only=True: a checkpoint is unpickled without running code from it.
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        print(f"stopped by SIGTERM; resume with --ckpt_path last ({cli.image_checkpoint.last_path})", file=sys.stderr)
        return 143
    if cli.model.training_finished and cli.trainer.is_global_zero:
        out = cli.image_checkpoint.dirpath / "export"
        export(cli.model.G_ema, out, int(cli.model.images_seen), cli.run_config, onnx=cli.config.export_onnx)
        print(f"exported the EMA generator to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
