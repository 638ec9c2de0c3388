"""FID of the generator on fixed validation faces (Heusel et al. 2017), with torchmetrics.

``FIDEvaluator`` keeps the real statistics of one resolution and recomputes them only when the
resolution changes. ``gan.evaluate`` uses it offline, ``gan.training.callbacks.FIDCallback`` during training.
"""

from collections.abc import Iterable

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from data.record import FaceBatch, to_float_image
from gan.conditioning import condition_batch
from gan.seeding import fixed_latents, step_seed


def sample_latents(generator: nn.Module, batch: FaceBatch, z: str, seed: int, device) -> torch.Tensor:
    """``zero``: z = 0 (the paper's FID); ``random``: fixed per batch, from the index of its first sample."""
    shape = (len(batch), *generator.latent_shape)
    if z == "zero":
        return torch.zeros(shape, device=device)
    if z != "random":
        raise ValueError(f"z must be 'zero' or 'random', got {z!r}")
    return fixed_latents(shape, step_seed(seed, int(batch.index[0]), 0), device)


class FIDEvaluator:
    """FID at one resolution; real statistics cached until the resolution changes.

    Args:
        extractor: ``(N, 3, H, W)`` [-1, 1] -> ``(N, d)`` with ``num_features``.
        name: how the extractor is named in logs and reports.
    """

    def __init__(self, extractor: nn.Module, name: str) -> None:
        self.name = name
        self.metric = FrechetInceptionDistance(feature=extractor, reset_real_features=False)
        self.real_resolution: int | None = None

    def _reset_real(self) -> None:
        self.metric.reset_real_features = True
        self.metric.reset()
        self.metric.reset_real_features = False

    @torch.no_grad()
    def __call__(
        self,
        generator: nn.Module,
        batches: Iterable[FaceBatch],
        resolution: int,
        alpha: float = 1.0,
        z: str = "random",
        seed: int = 0,
        device: torch.device | str = "cpu",
        output: str = "composited",
    ) -> float:
        """FID of ``generator`` on ``batches`` (uint8 faces) at ``resolution``; fakes at the stage's ``alpha``,
        reals always at alpha = 1. ``output``: ``composited`` (the face pasted into the real crop) or ``raw`` (the
        whole generated crop: the paper's protocol, with z = 0)."""
        if output not in ("composited", "raw"):
            raise ValueError(f"output must be 'composited' or 'raw', got {output!r}")
        self.metric.to(device)
        need_real = self.real_resolution != resolution
        if need_real:
            self._reset_real()
        else:
            self.metric.reset()  # keeps the real statistics (reset_real_features=False)
        for batch in batches:
            image = to_float_image(batch.image.to(device))
            box, keypoints = batch.box.to(device), batch.keypoints.to(device)
            conditioned = condition_batch(image, box, keypoints, resolution, alpha)
            if need_real:
                real = conditioned.image if alpha >= 1 else condition_batch(image, box, keypoints, resolution).image
                self.metric.update(real, real=True)
            latents = sample_latents(generator, batch, z, seed, device)
            fake = generator(conditioned.condition, conditioned.mask, conditioned.keypoints, latents,
                             resolution=resolution, alpha=alpha, composite=output == "composited")
            self.metric.update(fake.float(), real=False)
        self.real_resolution = resolution
        return float(self.metric.compute())
