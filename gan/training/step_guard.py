"""What a training step does when its gradients are not finite: the ``nonfinite_step`` policy, in one object.

``StepGuard.step`` applies an optimizer's step unless the gradients hold an inf or NaN and returns a 0-dim bool
device flag (True: the step was dropped); ``retry`` says whether the batch runs again. The guard owns the counters
(``skipped_steps``: optimizer steps dropped; ``retried_steps``: batches run again), checkpointed as its buffers.

What it reads back from the device per training step (each read is a wait on a GPU):

- foreach Adam (the default): one flag per optimizer, to decide whether to step (2 per training step);
- fused Adam: none; the fused kernel skips a non-finite update itself (``found_inf``), and ``retry`` reads the
  critic's and the generator's flags together once (1 per training step; 0 with ``skip``);
- fp16 with a GradScaler: the scaler skips the step; its scale is read, as Lightning's own loop does.
"""

from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

MAX_RETRIES = 8  # nonfinite_step="retry": then the step is dropped (the fp16 loss scale has fallen 2^8 by then)


def grads_nonfinite(parameters: Iterable[nn.Parameter]) -> torch.Tensor:
    """A 0-dim bool tensor on the parameters' device: True if any gradient holds an inf or NaN (not read here)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros((), dtype=torch.bool)
    # The total norm is inf or NaN exactly when some element is (torch's foreach norm: one kernel per dtype/device).
    return ~torch.isfinite(torch.nn.utils.get_total_norm(grads, error_if_nonfinite=False))


class StepGuard(nn.Module):
    """The non-finite step policy: ``retry`` (the paper's apex fp16: the batch runs again, at most ``MAX_RETRIES``
    times, its images counted once) or ``skip`` (the step is dropped, its images still counted).

    Args:
        policy: ``retry`` or ``skip`` (``model.nonfinite_step``).
        fused: the optimizers are fused Adam (``model.fused_adam``): flags stay on the device.
    """

    def __init__(self, policy: Literal["retry", "skip"] = "retry", fused: bool = False) -> None:
        super().__init__()
        if policy not in ("retry", "skip"):
            raise ValueError(f"model.nonfinite_step must be 'retry' or 'skip', got {policy!r}")
        self.policy, self.fused = policy, fused
        self.register_buffer("skipped_steps", torch.zeros((), dtype=torch.int64))  # optimizer steps dropped
        self.register_buffer("retried_steps", torch.zeros((), dtype=torch.int64))  # batches run again
        self._dropped_on_host: bool | None = None  # the last step's flag, where reading it was already paid for

    def attempts(self) -> range:
        """The attempts at one batch: 1 + ``MAX_RETRIES`` under ``retry``, 1 under ``skip``."""
        return range(1 + (MAX_RETRIES if self.policy == "retry" else 0))

    def step(self, optimizer, parameters: Iterable[nn.Parameter], scaler=None,
             blocked: torch.Tensor | None = None) -> torch.Tensor:
        """Step ``optimizer`` (a Lightning-wrapped one) unless the gradients of ``parameters`` are not finite, then
        zero them. ``blocked`` (a device flag from ``block``) also drops the step, uncounted. Returns the device flag:
        True where this optimizer's gradients were not finite."""
        parameters = list(parameters)
        if scaler is not None:  # fp16: the GradScaler skips the step and lowers its scale
            before = scaler.get_scale()
            optimizer.step()
            dropped = scaler.get_scale() < before
            self._dropped_on_host = dropped
            flag = torch.tensor(dropped, device=self.skipped_steps.device)
            self.skipped_steps += int(dropped)
        elif self.fused:
            flag = grads_nonfinite(parameters).to(self.skipped_steps.device)
            inner = optimizer.optimizer
            # The protocol by which torch's GradScaler tells a fused optimizer to skip (``found_inf``, read by its
            # kernel on the device; Adam declares ``_step_supports_amp_scaling``): there is no public argument.
            inner.found_inf = (flag if blocked is None else flag | blocked).float()
            optimizer.step()
            del inner.found_inf
            self._dropped_on_host = None
            self.skipped_steps += flag
        else:
            flag = grads_nonfinite(parameters)
            dropped = bool(flag)
            if not dropped:
                optimizer.step()
            self._dropped_on_host = dropped
            self.skipped_steps += int(dropped)
        optimizer.zero_grad(set_to_none=True)
        return flag

    def _retry_left(self, attempt: int) -> bool:
        return attempt + 1 < len(self.attempts())

    def block(self, attempt: int, dropped: torch.Tensor) -> torch.Tensor | None:
        """The flag that must also drop the next optimizer's step on the device (fused Adam, a retry left), else None:
        the critic's unread flag blocks the generator's step, and ``retry`` reads both at once."""
        return dropped if self.fused and self._retry_left(attempt) else None

    def retry(self, attempt: int, dropped: torch.Tensor | None = None) -> bool:
        """Whether to run the batch again after the last step (counted in ``retried_steps``). The flag is read on
        the host only if it is not known there yet and ``dropped`` is given (fused Adam: after the generator's
        step, with the critic's flag or-ed in); ``dropped=None`` never reads."""
        if not self._retry_left(attempt):
            return False
        again = self._dropped_on_host
        if again is None:
            again = dropped is not None and bool(dropped)
        if again:
            self.retried_steps += 1
        return again
