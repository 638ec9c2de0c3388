"""The DeepPrivacy GAN as a LightningModule (manual optimization).

Per step (Hukkelås et al., ISVC 2019): condition the batch at the stage's resolution and alpha, one
critic step with WGAN-GP (lambda 10) and epsilon drift (0.001), one generator step on the same batch,
update the EMA generator, count the global batch into ``images_seen``. The schedule is a pure function
of ``images_seen``; at every growth both Adam states are reset.

The paper's procedure is the default; each point where SafeFakes can do otherwise is a named option
(``critic_input``, ``generator_step``, ``box_jitter``, ``box_rounding``, ``nonfinite_step``). Every option is
documented once, in ``DeepPrivacyGAN``'s docstring (``python train.py --help`` prints it); the README's tables
compare them and the YAML files name the paper's values.
"""

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Literal

import pytorch_lightning as pl
import torch

from data.record import FaceBatch
from gan.checkpoint import KEY, check_resumable, checkpoint_metadata, load_initial_weights
from gan.conditioning import condition_batch
from gan.discriminator import Discriminator, DiscriminatorConfig
from gan.ema import copy_weights, ema_beta, ema_update
from gan.generator import Generator, GeneratorConfig
from gan.losses import epsilon_penalty, generator_loss, gradient_penalty, wgan_d_loss
from gan.seeding import step_generator
from gan.training.schedule import Schedule, Stage, StepProgress
from gan.training.step_guard import StepGuard


@dataclass(frozen=True)
class ForwardPasses:
    """The networks as one step calls them: G and D (compiled under ``model.compile``) and the fade weight they get
    (a float, or a device tensor when compiled)."""

    G: Callable[..., torch.Tensor]
    D: Callable[..., torch.Tensor]
    resolution: int
    alpha: float | torch.Tensor


class DeepPrivacyGAN(pl.LightningModule):
    """Progressive conditional GAN of DeepPrivacy.

    Args:
        generator: the generator's architecture (``gan.generator.GeneratorConfig``: base_width, latent_channels,
            to_rgb_gain, pixel_norm_eps; the paper's by default).
        critic: the critic's architecture (``gan.discriminator.DiscriminatorConfig``: minibatch_std, output_gain).
        critic_input: ``raw`` (the paper: the critic sees the generator's whole output, background included) or
            ``composited`` (the real background around the generated box, as DeepPrivacy2 and most inpainting
            GANs do); the gradient penalty interpolates what the critic sees.
        generator_step: ``fresh`` (the paper: the generator step draws a new z and runs G again) or ``reuse`` (the
            critic's fake and its z: one generator forward less per step, about 12 % of a step).
        box_jitter: p of the paper's box augmentation: each side moves by trunc(s * side) pixels, s ~ U(-p, p)
            per face, drawn from the step's seeded stream (0 turns it off).
        box_rounding: ``floor`` (the paper's dataset rule: both box ends floored at r px) or ``outward`` (floor
            the start, ceil the end: no face pixel outside the box; up to 1 px larger at 8-32 px).
        nonfinite_step: ``retry`` (the paper's apex fp16: a step with non-finite gradients runs again on the
            same batch, at most ``step_guard.MAX_RETRIES`` times; its images are counted once) or ``skip`` (the step is
            dropped, its images still counted); see ``gan.training.step_guard``.
        gp_every: lazy regularisation (StyleGAN2): the gradient penalty on every N-th critic step only, with weight
            x N. 1 is the paper's recipe (and bit-identical to it); N > 1 departs from it to save the penalty's
            double backward on the other steps.
        channels_last: keep G, D and the batch in channels-last memory format (faster convolutions on some
            hardware; the results agree within float rounding).
        compile: run G's and D's training forward passes through ``torch.compile`` (``compile_backend``, inductor by
            default). A fade's alpha is a device tensor, an input of the graph: one graph per network, resolution,
            phase and grad mode (the previous stage's graphs are dropped with ``torch.compiler.reset()`` when the
            stage changes). The first step of a fade (alpha = 0) and the gradient penalty's critic, whose double
            backward AOTAutograd cannot differentiate, run eagerly. Results agree with eager within float
            rounding (fused kernels reorder sums).
        fused_adam: Adam's fused kernel for both networks, which also keeps the finite-gradient check on the
            device (``gan.training.step_guard``: 0 or 1 reads per step instead of 2). Fused Adam rounds
            differently from foreach Adam (1 ulp per step).
        init_from: a weights file (``python -m gan.import_deepprivacy ... --training-checkpoint``) whose G, G_ema and
            critic (if it holds one) start a fresh run; ignored when a run resumes from a checkpoint.
        schedule: growth schedule and global batch sizes, by images seen; its ``max_resolution`` is the
            largest resolution the networks are built for (128 in the paper).
        learning_rate / betas: Adam for both networks.
        gp_weight / epsilon_weight: lambda of the gradient penalty and weight of the drift penalty.
        ema_half_life_images: half-life of the EMA generator's average, in images.
        seed: seed of every random stream of a step (latents, penalty weights; see ``gan.seeding``).

    Progress: ``images_seen`` (a checkpointed buffer; ``images_seen_host`` mirrors it on the host so a step
    reads it without waiting for the device), ``stage`` (where training stands) and ``progress``
    (what the last step did: ``StepProgress``, None before the first step of this process).
    """

    def __init__(
        self,
        generator: GeneratorConfig = GeneratorConfig(),
        critic: DiscriminatorConfig = DiscriminatorConfig(),
        critic_input: Literal["raw", "composited"] = "raw",
        generator_step: Literal["fresh", "reuse"] = "fresh",
        box_jitter: float = 0.02,
        box_rounding: Literal["floor", "outward"] = "floor",
        nonfinite_step: Literal["retry", "skip"] = "retry",
        gp_every: int = 1,
        channels_last: bool = False,
        compile: bool = False,
        fused_adam: bool = False,
        init_from: str | None = None,
        schedule: Schedule = Schedule(),
        learning_rate: float = 0.00175,
        betas: tuple[float, float] = (0.0, 0.99),
        gp_weight: float = 10.0,
        epsilon_weight: float = 0.001,
        ema_half_life_images: int = 10_000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0 <= box_jitter < 0.5:
            raise ValueError(f"model.box_jitter must lie in [0, 0.5), got {box_jitter}")
        if gp_every < 1:
            raise ValueError(f"model.gp_every must be >= 1, got {gp_every}")
        if not isinstance(generator, GeneratorConfig) or not isinstance(critic, DiscriminatorConfig):
            raise TypeError("model.generator and model.critic are a GeneratorConfig and a DiscriminatorConfig, got "
                            f"{type(generator).__name__} and {type(critic).__name__}")
        max_resolution = schedule.max_resolution
        # Plain values only, so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters(ignore=["generator", "critic", "schedule"])
        self.hparams.update(generator=asdict(generator), critic=asdict(critic), schedule=asdict(schedule))
        self.automatic_optimization = False
        self.schedule = schedule
        self.G = Generator(generator, max_resolution)
        self.D = Discriminator(critic, generator.base_width, max_resolution)
        self.G_ema = Generator(generator, max_resolution).requires_grad_(False)
        copy_weights(self.G_ema, self.G)
        self.guard = StepGuard(nonfinite_step, fused_adam)
        # Training state lives in buffers: checkpointed, and carried back from spawned processes.
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.int64))
        self.register_buffer("resolution", torch.zeros((), dtype=torch.int64))  # 0 until the first step
        self.register_buffer("critic_steps", torch.zeros((), dtype=torch.int64))  # gp_every counts these
        self.progress: StepProgress | None = None
        self._compiled: tuple[tuple[int, str], Callable, Callable] | None = None  # (stage key, G, D) under compile
        self._host: dict[str, int] | None = None  # the counting buffers, mirrored on the host (see images_seen_host)
        self._last_step_time: float | None = None

    # ----------------------------------------------------------------------------------------------- state

    @property
    def stage(self) -> Stage:
        return self.schedule.stage_at(self.images_seen_host)

    @property
    def images_seen_host(self) -> int:
        """``images_seen`` as a Python int, read from the device once per fit and then counted on the host."""
        return self._host_counters()["images_seen"]

    def _host_counters(self) -> dict[str, int]:
        if self._host is None:  # one read of the device per fit (and after a checkpoint is loaded)
            self._host = {name: int(getattr(self, name)) for name in ("images_seen", "resolution", "critic_steps")}
        return self._host

    @property
    def training_finished(self) -> bool:
        return int(self.images_seen) >= self.schedule.total_images

    def configure_optimizers(self):
        kwargs = dict(lr=self.hparams.learning_rate, betas=tuple(self.hparams.betas))
        if self.hparams.fused_adam:
            kwargs["fused"] = True
        return torch.optim.Adam(self.G.parameters(), **kwargs), torch.optim.Adam(self.D.parameters(), **kwargs)

    def _grow(self, resolution: int) -> None:
        """Enter a new resolution: reset both Adam states; the EMA takes the new layers from G."""
        for optimizer in self.optimizers():
            optimizer.optimizer.state.clear()
        key = str(resolution)
        for part in ("from_rgb", "encoder", "decoder", "to_rgb"):
            copy_weights(getattr(self.G_ema, part)[key], getattr(self.G, part)[key])
        self.resolution.fill_(resolution)

    # ------------------------------------------------------------------------------------------- training

    @property
    def _scaler(self):
        """The GradScaler of '16-mixed' (shared by both optimizers), None otherwise."""
        return getattr(self.trainer.precision_plugin, "scaler", None)

    def _grad_scale(self) -> float:
        return float(self._scaler.get_scale()) if self._scaler is not None else 1.0

    def training_step(self, batch: FaceBatch, batch_idx: int) -> None:
        stage = self.stage
        world = self.trainer.world_size
        if len(batch) * world != stage.batch_size:
            raise RuntimeError(
                f"batch of {len(batch)} x {world} ranks at images_seen={self.images_seen_host}; the schedule "
                f"asks for {stage.batch_size} (use FaceDataModule's scheduled loader)"
            )
        seen = self.images_seen_host
        if stage.resolution != self._host["resolution"]:
            self._grow(stage.resolution)
            self._host["resolution"] = stage.resolution
        h = self.hparams
        # Every random draw of the step, from one stream seeded by (seed, images_seen, rank).
        rng = step_generator(h.seed, seen, self.global_rank, self.device)
        z = torch.randn(len(batch), *self.G.latent_shape, device=self.device, generator=rng)
        epsilon = torch.rand(len(batch), 1, 1, 1, device=self.device, generator=rng)
        jitter = None
        if h.box_jitter:
            jitter = (torch.rand(len(batch), device=self.device, generator=rng) * 2 - 1) * h.box_jitter
        z_generator = None
        if h.generator_step == "fresh":
            z_generator = torch.randn(len(batch), *self.G.latent_shape, device=self.device, generator=rng)
        image = batch.image.contiguous(memory_format=torch.channels_last) if h.channels_last else batch.image
        conditioned = condition_batch(image, batch.box, batch.keypoints, stage.resolution, h.box_rounding, stage.alpha,
                                      jitter)
        passes = self._forward_passes(stage)
        guard = self.guard
        for attempt in guard.attempts():  # one attempt unless a step's gradients are not finite (StepGuard)
            losses, fake, critic_dropped = self._critic_step(conditioned, z, epsilon, passes)
            if guard.retry(attempt):
                continue
            blocked = guard.block(attempt, critic_dropped)
            losses["loss/G"], generator_dropped = self._generator_step(conditioned, fake, z_generator, passes, blocked)
            if guard.retry(attempt, generator_dropped if blocked is None else generator_dropped | blocked):
                continue
            break

        ema_update(self.G_ema, self.G, ema_beta(stage.batch_size, h.ema_half_life_images))
        self.images_seen += stage.batch_size  # the checkpointed truth, on the device
        self._host["images_seen"] = seen + stage.batch_size
        self.progress = StepProgress(self.schedule, seen, seen + stage.batch_size)

        # The progress bar shows the latest losses; TensorBoard gets every scalar with images seen as its step.
        self.log_dict({"D": losses["loss/D/total"], "G": losses["loss/G"]}, on_step=True, prog_bar=True, logger=False,
                      batch_size=len(batch))
        if batch_idx % self.trainer.log_every_n_steps == 0 or self.progress.finished:
            self.log_scalars({
                **losses, "progress/skipped_steps": guard.skipped_steps, "progress/retried_steps": guard.retried_steps,
                "progress/resolution": stage.resolution, "progress/alpha": stage.alpha,
                "progress/images_seen": self.progress.after, "progress/batch_size": stage.batch_size,
            })

    def log_scalars(self, scalars: dict) -> None:
        """Write scalars to every logger (global rank 0), at step = images seen."""
        if not self.trainer.is_global_zero:
            return
        values = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in scalars.items()}
        for logger in self.loggers:
            logger.log_metrics(values, step=self.images_seen_host)

    compile_backend: str | Callable = "inductor"  # torch.compile's backend under ``compile`` (tests count with theirs)

    def _forward_passes(self, stage: Stage) -> ForwardPasses:
        """The step's networks: eager, or under ``compile`` the compiled pair of this (resolution, phase)."""
        if not self.hparams.compile or stage.alpha == 0.0:  # alpha = 0 runs one path: a graph of its own, eagerly
            return ForwardPasses(self.G, self.D, stage.resolution, stage.alpha)
        key = (stage.resolution, stage.phase)
        if self._compiled is None or self._compiled[0] != key:
            torch.compiler.reset()  # the previous stage's graphs never run again
            options = dict(backend=self.compile_backend, dynamic=False, fullgraph=True)
            self._compiled = (key, torch.compile(self.G.forward, **options), torch.compile(self.D.forward, **options))
        alpha = stage.alpha if stage.phase == "stabilize" else torch.tensor(stage.alpha, device=self.device)
        return ForwardPasses(self._compiled[1], self._compiled[2], stage.resolution, alpha)

    def _generate(self, conditioned, z: torch.Tensor, passes: ForwardPasses) -> torch.Tensor:
        """G's output as the critic sees it (``critic_input``)."""
        return passes.G(conditioned.condition, conditioned.mask, conditioned.keypoints, z, resolution=passes.resolution,
                        alpha=passes.alpha, composite=self.hparams.critic_input == "composited")

    def _critic(self, image: torch.Tensor, conditioned, passes: ForwardPasses, eager: bool = False) -> torch.Tensor:
        """D's scores; ``eager`` for the gradient penalty, whose double backward AOTAutograd cannot differentiate."""
        critic = self.D if eager else passes.D
        return critic(image, conditioned.condition, conditioned.keypoints, resolution=passes.resolution,
                      alpha=passes.alpha)

    def _critic_step(self, conditioned, z, epsilon, passes: ForwardPasses) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """WGAN-GP with epsilon drift. Returns (losses, the fake, the device flag: the step was dropped)."""
        reuse = self.hparams.generator_step == "reuse"
        with nullcontext() if reuse else torch.no_grad():  # a fresh G step needs no graph of this fake
            fake = self._generate(conditioned, z, passes)
        opt_g, opt_d = self.optimizers()
        self.toggle_optimizer(opt_d)
        real_scores = self._critic(conditioned.image, conditioned, passes)
        fake_scores = self._critic(fake.detach(), conditioned, passes)
        loss_wgan = wgan_d_loss(real_scores, fake_scores)
        loss_eps = epsilon_penalty(real_scores)
        loss_d = loss_wgan + self.hparams.epsilon_weight * loss_eps
        losses = {"loss/D/wgan": loss_wgan, "loss/D/epsilon": loss_eps}
        every = self.hparams.gp_every
        host = self._host_counters()
        if host["critic_steps"] % every == 0:  # lazy regularisation: weight x N on every N-th step
            loss_gp = gradient_penalty(lambda image: self._critic(image, conditioned, passes, eager=True),
                                       conditioned.image, fake.detach(), epsilon, scale=self._grad_scale())
            loss_d = loss_wgan + self.hparams.gp_weight * every * loss_gp + self.hparams.epsilon_weight * loss_eps
            losses["loss/D/gp"] = loss_gp
        self.critic_steps += 1
        host["critic_steps"] += 1
        self.manual_backward(loss_d)
        dropped = self.guard.step(opt_d, self.D.parameters(), self._scaler)
        self.untoggle_optimizer(opt_d)
        return {**losses, "loss/D/total": loss_d}, fake, dropped

    def _generator_step(self, conditioned, fake, z_generator, passes: ForwardPasses,
                        blocked: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-D(G(c)) against the updated critic: on the critic's fake (``reuse``) or a fresh sample."""
        opt_g, _ = self.optimizers()
        self.toggle_optimizer(opt_g)
        if z_generator is not None:
            fake = self._generate(conditioned, z_generator, passes)
        loss_g = generator_loss(self._critic(fake, conditioned, passes))
        self.manual_backward(loss_g)
        dropped = self.guard.step(opt_g, self.G.parameters(), self._scaler, blocked)
        self.untoggle_optimizer(opt_g)
        return loss_g, dropped

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last_step_time is not None and batch_idx % self.trainer.log_every_n_steps == 0:
            self.log_scalars({"perf/images_per_second": self.progress.batch_size / (now - self._last_step_time)})
        self._last_step_time = now
        if self.progress.finished:
            self.trainer.should_stop = True

    def on_train_epoch_end(self) -> None:
        """The schedule is the only end of a fit (``max_epochs: -1``): an epoch ends only where it is complete, or
        with no batch at all when a finished run is resumed."""
        if self.training_finished:
            self.trainer.should_stop = True

    # ----------------------------------------------------------------------------------------- checkpoints

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Random streams are derived from (seed, images_seen, rank): images_seen is the whole RNG state.
        # The run's configuration, if any, was put there by the CLI's callback (gan.training.cli.RunConfig).
        config = checkpoint.get(KEY, {}).get("config")
        checkpoint[KEY] = checkpoint_metadata(int(self.images_seen), vars(self.stage), config)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        check_resumable(checkpoint, self.hparams)  # upgrades an older checkpoint in place first
        self._host = None  # the buffers are about to be restored: read them again

    def on_fit_start(self) -> None:
        """A fresh run with ``init_from`` starts from the weights in that file; ``channels_last`` is applied."""
        if self.hparams.init_from and int(self.images_seen) == 0:
            load_initial_weights(self, self.hparams.init_from)
        if self.hparams.channels_last:
            for network in (self.G, self.D, self.G_ema):
                network.to(memory_format=torch.channels_last)
