"""Training-step figures on a GPU in one command: images/s, TFLOP/s, fraction of bf16 peak, peak memory, DDP scaling.

    python bench/gpu_step.py                      # the paper model (c = 512) at 128 and 64 px, bf16-mixed, 64/GPU
    python bench/gpu_step.py --devices 8          # ... and DDP on 8 GPUs: scaling efficiency per added GPU
    python bench/gpu_step.py --variants eager,compile --resolutions 128 --peak-tflops 989

Each (variant, resolution, devices) runs in a fresh process (its own compile cache and memory peak) through
Lightning's Trainer and ``DeepPrivacyGAN.training_step``, on one synthetic batch repeated (the step, not the data
loader, is measured), at alpha = 1 of that resolution: ``--warmup`` steps (compilation included; their time is
printed as ``warmup s``), then ``--steps`` timed steps between two device synchronisations; with ``--rounds R``
every measurement runs R times, alternating, and the median round is reported.

FLOP per image: torch.utils.flop_counter over one eager step per ``gp_every`` (so lazy regularisation's saving is
in the count), a multiply-add = 2 FLOP; achieved TFLOP/s = FLOP/image x images/s; the fraction of peak divides by
the device's dense bf16 tensor-core peak (``PEAK_BF16_TFLOPS`` by device name, or ``--peak-tflops``).
DDP: efficiency = images/s on N GPUs / (N x images/s on one), same variant, batch 64 per GPU. "of plain conv": the
achieved TFLOP/s over that of a plain 3x3 conv at the model's width at that resolution, measured in the same run.

Without a GPU it runs a tiny model (c = 16, 16 px, batch 4, fp32, the uncompiled variants) so that the script
itself is tested; those figures say nothing about a GPU. Prints a Markdown table and one JSON line.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

# Dense bf16 tensor-core peaks in TFLOP/s (vendor data sheets, without sparsity), matched in order against
# torch.cuda.get_device_name(): the first entry contained in the name wins.
PEAK_BF16_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100": 989.0,  # SXM
    "H200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "RTX 4090": 165.0,  # fp32 accumulate
}

VARIANTS = {
    "eager": {},
    "channels_last": {"channels_last": True},
    "compile": {"compile": True},
    "compile+channels_last": {"compile": True, "channels_last": True},
    "lazy_gp": {"gp_every": 4},
    "fused_adam": {"fused_adam": True},
    "channels_last+lazy_gp+fused_adam": {"channels_last": True, "gp_every": 4, "fused_adam": True},
    "compile+lazy_gp+fused_adam": {"compile": True, "gp_every": 4, "fused_adam": True},
}
GPU_VARIANTS = [name for name in VARIANTS if name != "channels_last+lazy_gp+fused_adam"]
CPU_VARIANTS = ["eager", "channels_last", "lazy_gp", "fused_adam"]  # inductor's C++ build takes minutes per graph


def peak_tflops(device_name: str) -> float | None:
    return next((peak for name, peak in PEAK_BF16_TFLOPS.items() if name in device_name), None)


# ------------------------------------------------------------------------------------------------ worker


def synthetic_data(batch_size: int, resolution: int, steps: int):
    """One FaceBatch of random uint8 crops with a centred box and 7 keypoints, ``steps`` times; made float on the
    device as FaceDataModule does (its augmentation left out)."""
    import pytorch_lightning as pl
    import torch

    from data.record import FaceBatch, to_float_image

    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (batch_size, 3, resolution, resolution), dtype=torch.uint8, generator=generator)
    box = torch.tensor([[0.25, 0.25, 0.75, 0.75]]).repeat(batch_size, 1)
    keypoints = 0.3 + 0.4 * torch.rand(batch_size, 7, 2, generator=generator)
    batch = FaceBatch(image, box, keypoints, torch.arange(batch_size))

    class SyntheticData(pl.LightningDataModule):
        def train_dataloader(self):
            return torch.utils.data.DataLoader([batch] * steps, batch_size=None, shuffle=False, pin_memory=True)

        def on_after_batch_transfer(self, faces, dataloader_idx):
            return FaceBatch(to_float_image(faces.image), faces.box, faces.keypoints, faces.index)

    return SyntheticData()


def fit(args, options: dict, steps: int, callbacks: list):
    """``steps`` training steps of ``args.batch`` per device at ``args.resolution``, alpha = 1."""
    import pytorch_lightning as pl
    import torch
    from stage import module_at

    cuda = torch.cuda.is_available()
    trainer = pl.Trainer(
        accelerator="gpu" if cuda else "cpu", devices=args.devices,
        strategy="ddp_find_unused_parameters_true" if args.devices > 1 else "auto",
        precision="bf16-mixed" if cuda else "32-true", max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False, limit_val_batches=0,
        num_sanity_val_steps=0, callbacks=callbacks,
    )
    model = module_at(args.base_width, args.max_resolution, args.resolution, args.batch * trainer.world_size, steps,
                      **options)
    trainer.fit(model, datamodule=synthetic_data(args.batch, args.resolution, steps))
    return trainer


def worker(args) -> None:
    """One measurement; rank 0 writes it as JSON to ``args.result``."""
    import pytorch_lightning as pl
    import torch
    from torch.utils.flop_counter import FlopCounterMode, _FlopCounterMode

    options = dict(VARIANTS[args.variant])
    cuda = torch.cuda.is_available()

    def synchronize():
        if cuda:
            torch.cuda.synchronize()

    class CountFlops(pl.Callback):
        """FLOPs of every step (eager: the counter cannot see inside compiled graphs)."""

        def __init__(self):
            self.counter, self.mode = FlopCounterMode(display=False), None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.mode = _FlopCounterMode(self.counter)
            self.mode.__enter__()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.mode.__exit__(None, None, None)

    class Timer(pl.Callback):
        def __init__(self):
            self.steps, self.start, self.end = 0, None, None
            self.launched = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.steps += 1
            if self.steps == args.warmup:
                synchronize()
                self.start = time.perf_counter()
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
            elif self.steps == args.warmup + args.steps:
                synchronize()
                self.end = time.perf_counter()

    # FLOP per image of this variant's work: one eager step per gp_every (the penalty runs on one of them).
    gp_every = options.get("gp_every", 1)
    counter = CountFlops()
    fit(args, {k: v for k, v in options.items() if k != "compile"}, gp_every, [counter])
    flops_per_image = counter.counter.get_total_flops() / (gp_every * args.batch)

    timer = Timer()
    trainer = fit(args, options, args.warmup + args.steps, [timer])
    if trainer.global_rank != 0:
        return
    seconds = timer.end - timer.start
    images_per_second = args.steps * args.batch * trainer.world_size / seconds
    result = {
        "variant": args.variant, "resolution": args.resolution, "devices": trainer.world_size,
        "images_per_second": images_per_second, "flop_per_image": flops_per_image,
        "tflops": flops_per_image * images_per_second / 1e12,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "warmup_seconds": timer.start - timer.launched,
    }
    Path(args.result).write_text(json.dumps(result))


# ------------------------------------------------------------------------------------------------ driver


def run_worker(args, variant: str, resolution: int, devices: int, folder: Path) -> dict:
    result = folder / f"{variant}-{resolution}-{devices}.json"
    command = [sys.executable, __file__, "--worker", "--variant", variant, "--resolution", str(resolution),
               "--devices", str(devices), "--result", str(result), "--base-width", str(args.base_width),
               "--max-resolution", str(args.max_resolution), "--batch", str(args.batch),
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if completed.returncode != 0 or not result.exists():
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"gpu_step: {variant} at {resolution} px on {devices} device(s) failed:\n{tail}")
    return json.loads(result.read_text())


def main(argv=None) -> None:
    import torch

    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(GPU_VARIANTS if cuda else CPU_VARIANTS),
                        help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--resolutions", default="128,64" if cuda else "16")
    parser.add_argument("--devices", type=int, default=1, help="N > 1: also DDP on N GPUs, per variant")
    parser.add_argument("--ddp-variants", default="eager,compile" if cuda else "eager",
                        help="the variants measured on N devices")
    parser.add_argument("--base-width", type=int, default=512 if cuda else 16)
    parser.add_argument("--max-resolution", type=int, default=128 if cuda else 16)
    parser.add_argument("--batch", type=int, default=64 if cuda else 4, help="per device")
    parser.add_argument("--steps", type=int, default=20 if cuda else 3)
    parser.add_argument("--warmup", type=int, default=5 if cuda else 1)
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every measurement, alternating; the median round counts (all are in the JSON)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak (default: by device name)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--resolution", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    ddp_variants = [v.strip() for v in args.ddp_variants.split(",") if v.strip()]
    unknown = [v for v in variants + ddp_variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    resolutions = [int(r) for r in args.resolutions.split(",")]
    if any(r > args.max_resolution for r in resolutions):
        parser.error(f"--resolutions {args.resolutions} exceed --max-resolution {args.max_resolution}")
    if args.devices > 1 and cuda and torch.cuda.device_count() < args.devices:
        parser.error(f"--devices {args.devices}: only {torch.cuda.device_count()} GPU(s) visible")
    device = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads, fp32)"
    peak = args.peak_tflops or (peak_tflops(device) if cuda else None)

    runs = [(variant, resolution, 1) for resolution in resolutions for variant in variants]
    if args.devices > 1:
        runs += [(variant, resolution, args.devices) for resolution in resolutions for variant in ddp_variants]
    measured: dict[tuple, list[dict]] = {key: [] for key in runs}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):  # alternating: a slow spell of a shared machine hits every variant alike
            for key in runs:
                measured[key].append(run_worker(args, *key, Path(folder)))
    results = []
    for key in runs:  # the median round of each measurement (its memory and warmup too)
        ordered = sorted(measured[key], key=lambda r: r["images_per_second"])
        result = dict(ordered[(len(ordered) - 1) // 2])
        result["rounds"] = [r["images_per_second"] for r in measured[key]]
        results.append(result)

    from flops import conv_flops_per_second

    from gan.channels import channel_table

    width = channel_table(args.base_width, args.max_resolution)
    conv = {r: conv_flops_per_second(width[r], r, args.batch, "cuda" if cuda else "cpu") / 1e12 for r in resolutions}
    single = {(r["variant"], r["resolution"]): r for r in results if r["devices"] == 1}
    for r in results:
        r["of_plain_conv"] = r["tflops"] / (conv[r["resolution"]] * r["devices"])
        eager = single.get(("eager", r["resolution"]))
        r["vs_eager"] = r["images_per_second"] / eager["images_per_second"] if eager and r["devices"] == 1 else None
        r["fraction_of_peak"] = r["tflops"] / peak if peak else None
        one = single.get((r["variant"], r["resolution"]))
        r["ddp_efficiency"] = (r["images_per_second"] / (r["devices"] * one["images_per_second"])
                               if r["devices"] > 1 and one else None)

    def cell(value, spec):
        return "-" if value is None else format(value, spec)

    print(f"{device}; c = {args.base_width}, batch {args.batch}/device, {args.steps} timed steps after {args.warmup}; "
          f"peak {cell(peak, '.0f')} TFLOP/s bf16 dense")
    print("plain 3x3 conv at the model's width, fwd+bwd: "
          + ", ".join(f"{conv[r]:.3f} TFLOP/s at {r} px" for r in resolutions))
    print("| px | variant | devices | img/s | vs eager | GFLOP/img | TFLOP/s | of peak | of plain conv | peak mem GiB "
          "| DDP eff. | warmup s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['resolution']} | {r['variant']} | {r['devices']} | {r['images_per_second']:.1f} | "
              f"{cell(r['vs_eager'], '.2f')} | {r['flop_per_image'] / 1e9:.2f} | {r['tflops']:.3f} | "
              f"{cell(r['fraction_of_peak'], '.1%')} | {r['of_plain_conv']:.2f} | "
              f"{cell(r['peak_memory_gib'], '.1f')} | "
              f"{cell(r['ddp_efficiency'], '.2f')} | {r['warmup_seconds']:.0f} |")
    print(json.dumps({"device": device, "peak_tflops": peak, "base_width": args.base_width, "batch": args.batch,
                      "plain_conv_tflops": {str(r): v for r, v in conv.items()}, "results": results}))


if __name__ == "__main__":
    main()
