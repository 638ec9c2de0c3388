"""Training-step throughput: Lightning vs a bare PyTorch loop, FLOP per image, and efficiency vs a plain conv.

    python bench/train_step.py [--base-width 64] [--max-resolution 64] [--batch 16] [--steps 12]

For each resolution (alpha = 1) it measures, in one run:
- images/s of the bare PyTorch loop of the same step (condition, G forward, critic step with WGAN-GP,
  generator step, EMA) and of the same step through Lightning's Trainer (DeepPrivacyGAN + FaceDataModule);
- FLOP per training image (torch.utils.flop_counter, a multiply-add = 2 FLOP), and for the paper model;
- achieved FLOP/s divided by the FLOP/s of a plain 3x3 conv (forward + backward) of the model's width
  measured on the same machine in the same run;
- with ``--options R``: the cost of each training-procedure option at resolution R, through Lightning, as the
  ratio of images/s to the paper's procedure (the default), alternating the variants round by round.

The bare loop is SafeFakes' cheaper procedure (composited critic input, the fake reused, no jitter), so the
Lightning side of the Lightning/bare ratio runs with the same options.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from flops import conv_flops_per_second, count_flops
from stage import module_at

from data.demo import build_demo
from data.record import FaceBatch, to_float_image
from gan.conditioning import condition_batch
from gan.ema import ema_beta, ema_update
from gan.losses import epsilon_penalty, generator_loss, gradient_penalty, wgan_d_loss
from gan.training.datamodule import FaceDataModule
from gan.training.module import DeepPrivacyGAN
from gan.training.schedule import Schedule


def bare_step(model: DeepPrivacyGAN, opt_g, opt_d, batch, resolution: int) -> None:
    x = condition_batch(to_float_image(batch.image), batch.box, batch.keypoints, resolution)
    z = torch.randn(len(x.image), *model.G.latent_shape)
    fake = model.G(x.condition, x.mask, x.keypoints, z, resolution=resolution)

    def critic(image):
        return model.D(image, x.condition, x.keypoints, resolution=resolution)

    real_scores, fake_scores = critic(x.image), critic(fake.detach())
    loss_d = (wgan_d_loss(real_scores, fake_scores) + 10 * gradient_penalty(critic, x.image, fake.detach())
              + 0.001 * epsilon_penalty(real_scores))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    model.D.requires_grad_(False)
    loss_g = generator_loss(critic(fake))
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    model.D.requires_grad_(True)
    ema_update(model.G_ema, model.G, ema_beta(len(x.image), 10_000))


class Timer(pl.Callback):
    """Wall time of the timed steps, and its share inside the step (batch start to batch end hooks: training_step
    and Lightning's wrapper of it) vs between steps (fetching the batch, moving and augmenting it, the loop)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.steps, self.start, self.inside = warmup, 0, None, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()
        self.steps += 1
        if self.steps == self.warmup:
            self.start = self.end
        elif self.steps > self.warmup:
            self.inside += self.end - self.batch_start


# The procedure the bare loop implements.
BARE_EQUIVALENT = dict(critic_input="composited", generator_step="reuse", box_jitter=0.0, box_rounding="outward",
                       nonfinite_step="skip")
# Each option changed alone from the paper's procedure (the module's default).
VARIANTS = {
    "paper (default)": {},
    "critic_input=composited": dict(critic_input="composited"),
    "generator_step=reuse": dict(generator_step="reuse"),
    "box_jitter=0": dict(box_jitter=0.0),
    "box_rounding=outward": dict(box_rounding="outward"),
    "nonfinite_step=skip": dict(nonfinite_step="skip"),
    "all SafeFakes choices": BARE_EQUIVALENT,
    "gp_every=4 (lazy regularisation)": dict(gp_every=4),
    "channels_last": dict(channels_last=True),
    "SafeFakes choices + gp_every=4": dict(BARE_EQUIVALENT, gp_every=4),
}


def lightning_run(args, data: Path, resolution: int, **options) -> Timer:
    """``args.steps`` timed training steps through Lightning's Trainer (after ``args.warmup`` steps)."""
    model = module_at(args.base_width, args.max_resolution, resolution, args.batch, args.steps + args.warmup, **options)
    timer = Timer(args.warmup)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
                         limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer])
    trainer.fit(model, datamodule=FaceDataModule(str(data), num_val=16, num_workers=0, flip_probability=0.0))
    return timer


def lightning_images_per_second(args, data: Path, resolution: int, **options) -> float:
    timer = lightning_run(args, data, resolution, **options)
    return (timer.steps - timer.warmup) * args.batch / (timer.end - timer.start)


def measure(args, data: Path, resolution: int) -> dict:
    datamodule = FaceDataModule(str(data), num_val=16, num_workers=0, flip_probability=0.0)
    # Bare PyTorch loop.
    model = module_at(args.base_width, args.max_resolution, resolution, args.batch, args.steps + args.warmup,
                      **BARE_EQUIVALENT)
    images = int(model.images_seen)
    opt_g, opt_d = (torch.optim.Adam(m.parameters(), lr=0.00175, betas=(0.0, 0.99)) for m in (model.G, model.D))
    loader = iter(datamodule.scheduled_loader(model.schedule, images))
    batches = [next(loader) for _ in range(args.warmup + args.steps)]
    flops = count_flops(lambda: bare_step(model, opt_g, opt_d, batches[0], resolution))
    for batch in batches[1 : args.warmup]:
        bare_step(model, opt_g, opt_d, batch, resolution)
    start = time.perf_counter()
    for batch in batches[args.warmup :]:
        bare_step(model, opt_g, opt_d, batch, resolution)
    bare_seconds = time.perf_counter() - start
    timer = lightning_run(args, data, resolution, **BARE_EQUIVALENT)
    seconds = timer.end - timer.start
    return {"bare": args.steps * args.batch / bare_seconds, "lightning": args.steps * args.batch / seconds,
            "flops": flops / args.batch, "bare_ms": 1e3 * bare_seconds / args.steps,
            "inside_ms": 1e3 * timer.inside / args.steps, "between_ms": 1e3 * (seconds - timer.inside) / args.steps}


def paper_step_flops() -> float:
    """FLOP of one training image for the paper model (c = 512, 128 px), counted on the meta device."""
    with torch.device("meta"):
        model = DeepPrivacyGAN(512, schedule=Schedule(max_resolution=128))
        opt_g, opt_d = (torch.optim.Adam(m.parameters()) for m in (model.G, model.D))
        batch = FaceBatch(torch.empty(1, 3, 128, 128, dtype=torch.uint8), torch.tensor([[0.2, 0.2, 0.8, 0.8]]),
                          torch.empty(1, 7, 2), torch.zeros(1, dtype=torch.int64))
        return count_flops(lambda: bare_step(model, opt_g, opt_d, batch, 128))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-width", type=int, default=64)
    parser.add_argument("--max-resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternate bare and Lightning runs; best of each")
    parser.add_argument("--options", type=int, metavar="R", help="only the cost of each procedure option at R px")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "demo"
        build_demo(data, variants_per_face=8)
        if args.options:
            print(f"CPU, {torch.get_num_threads()} threads, fp32; base width {args.base_width}, batch {args.batch}, "
                  f"{args.options} px; best of {args.rounds} alternating rounds")
            best = {name: 0.0 for name in VARIANTS}
            for _ in range(args.rounds):
                for name, options in VARIANTS.items():
                    best[name] = max(best[name], lightning_images_per_second(args, data, args.options, **options))
            print("| procedure | img/s | vs paper |\n|---|---|---|")
            for name, value in best.items():
                print(f"| {name} | {value:.1f} | {value / best['paper (default)']:.3f} |")
            return
        conv = conv_flops_per_second(args.base_width, 32, args.batch)
        print(f"CPU, {torch.get_num_threads()} threads, fp32; base width {args.base_width}, batch {args.batch}")
        print(f"plain 3x3 conv {args.base_width}->{args.base_width} at 32 px, fwd+bwd: {conv / 1e9:.1f} GFLOP/s")
        print(f"paper model (c = 512, 128 px): {paper_step_flops() / 1e12:.2f} TFLOP per training image")
        print("Per step (ms, median of the rounds): bare; Lightning = inside the step (training_step and its hooks)"
              " + between steps (loading, moving and augmenting the batch, the loop)")
        print(f"{'res':>4} {'GFLOP/img':>10} {'bare img/s':>11} {'Lightning img/s':>16} {'L/bare':>7}"
              f" {'eff vs conv':>12} {'bare ms':>8} {'inside ms':>10} {'between ms':>11} {'L/bare median':>14}"
              f" {'L/bare per round':>20}")
        for resolution in [r for r in (8, 16, 32, 64, 128) if r <= args.max_resolution]:
            runs = [measure(args, data, resolution) for _ in range(args.rounds)]
            m = {key: max(run[key] for run in runs) for key in ("bare", "lightning", "flops")}
            ms = {key: statistics.median(run[key] for run in runs) for key in ("bare_ms", "inside_ms", "between_ms")}
            efficiency = m["flops"] * m["lightning"] / conv
            per_round = " ".join(f"{run['lightning'] / run['bare']:.2f}" for run in runs)
            print(f"{resolution:>4} {m['flops'] / 1e9:>10.3f} {m['bare']:>11.1f} {m['lightning']:>16.1f} "
                  f"{m['lightning'] / m['bare']:>7.3f} {efficiency:>12.2f} {ms['bare_ms']:>8.1f}"
                  f" {ms['inside_ms']:>10.1f} {ms['between_ms']:>11.1f}"
                  f" {ms['bare_ms'] / (ms['inside_ms'] + ms['between_ms']):>14.3f} {per_round:>20}")


if __name__ == "__main__":
    main()
