"""FID of the generator on fixed validation faces (Heusel et al. 2017), with torchmetrics.

``FIDEvaluator`` keeps the real statistics of one resolution (or one named set of images) and recomputes them
only when that changes. ``gan.evaluate`` uses it offline, ``gan.training.callbacks.FIDCallback`` during training,
``gan.privacy`` for the realism of each anonymization method.
"""

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from data.record import FaceBatch, to_float_image
from gan.conditioning import Rounding, condition_batch, downsample_to
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
    """FID against real statistics that are kept until what they are of changes (a resolution, or a named set).

    The one FID path: training (``FIDCallback``), ``gan.evaluate`` (``__call__``: a generator on face batches) and the
    privacy report (``compare``: images of each anonymization method against the originals).

    Args:
        extractor: ``(N, 3, H, W)`` [-1, 1] -> ``(N, d)`` with ``num_features``.
        name: how the extractor is named in logs and reports.
    """

    def __init__(self, extractor: nn.Module, name: str) -> None:
        self.name = name
        self.metric = FrechetInceptionDistance(feature=extractor, reset_real_features=False)
        self.real_key: object = None  # what the kept real statistics are of

    def _start(self, key, device) -> bool:
        """Reset the fake statistics (and the real ones unless they are of ``key``); True if reals must be given."""
        self.metric.to(device)
        need_real = self.real_key != key
        if need_real:
            self.metric.reset_real_features = True
            self.metric.reset()
            self.metric.reset_real_features = False
        else:
            self.metric.reset()  # keeps the real statistics (reset_real_features=False)
        return need_real

    def _finish(self, key) -> float:
        self.real_key = key
        return float(self.metric.compute())

    @torch.no_grad()
    def compare(self, key: str, fakes: Iterable[torch.Tensor], reals: Callable[[], Iterable[torch.Tensor]],
                device: torch.device | str = "cpu") -> float:
        """FID of the images ``fakes`` (float in [-1, 1]) against ``reals()``, which is called only when the kept
        statistics are not already those of ``key``."""
        if self._start(key, device):
            for real in reals():
                self.metric.update(real.to(device).float(), real=True)
        for fake in fakes:
            self.metric.update(fake.to(device).float(), real=False)
        return self._finish(key)

    @torch.no_grad()
    def __call__(
        self,
        generator: nn.Module,
        batches: Iterable[FaceBatch],
        resolution: int,
        rounding: Rounding,
        alpha: float = 1.0,
        z: str = "random",
        seed: int = 0,
        device: torch.device | str = "cpu",
        output: str = "composited",
    ) -> float:
        """FID of ``generator`` on ``batches`` (uint8 faces) at ``resolution``, boxes placed by ``rounding`` (the rule
        it is trained with); fakes at the stage's ``alpha``, reals always at alpha = 1. ``output``: ``composited``
        (the face pasted into the real crop) or ``raw`` (the whole generated crop: the paper's protocol, with
        z = 0). Real statistics are computed in the same pass over ``batches`` when they are not kept already."""
        if output not in ("composited", "raw"):
            raise ValueError(f"output must be 'composited' or 'raw', got {output!r}")
        key = ("faces", resolution, rounding)
        need_real = self._start(key, device)
        for batch in batches:
            image = to_float_image(batch.image.to(device))
            box, keypoints = batch.box.to(device), batch.keypoints.to(device)
            conditioned = condition_batch(image, box, keypoints, resolution, rounding, alpha)
            if need_real:
                real = conditioned.image if alpha >= 1 else downsample_to(image, resolution)
                self.metric.update(real, real=True)
            latents = sample_latents(generator, batch, z, seed, device)
            fake = generator(conditioned.condition, conditioned.mask, conditioned.keypoints, latents,
                             resolution=resolution, alpha=alpha, composite=output == "composited")
            self.metric.update(fake.float(), real=False)
        return self._finish(key)
