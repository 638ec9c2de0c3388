"""gan.training.step_guard: the non-finite step policy, on a bare optimizer (the training tests run it in steps)."""

import pytest
import torch
from torch import nn

from gan.training.step_guard import MAX_RETRIES, StepGuard, grads_nonfinite


class Wrapped:
    """What the guard is given in training: Lightning's optimizer wrapper (``.optimizer`` is torch's)."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def step(self):
        self.optimizer.step()

    def zero_grad(self, set_to_none=True):
        self.optimizer.zero_grad(set_to_none=set_to_none)


def network_with_grad(value: float, fused: bool = False):
    layer = nn.Linear(2, 1)
    layer.weight.grad = torch.full_like(layer.weight, value)
    layer.bias.grad = torch.zeros_like(layer.bias)
    return layer, Wrapped(torch.optim.Adam(layer.parameters(), lr=0.1, fused=fused))


@pytest.mark.parametrize("fused", [False, True])
def test_a_non_finite_step_is_dropped_counted_and_flagged_on_the_device(fused):
    guard = StepGuard("skip", fused)
    layer, optimizer = network_with_grad(float("nan"), fused)
    before = layer.weight.detach().clone()
    flag = guard.step(optimizer, layer.parameters())
    assert torch.is_tensor(flag) and flag.dtype == torch.bool and bool(flag)
    assert torch.equal(layer.weight, before) and layer.weight.grad is None
    assert int(guard.skipped_steps) == 1 and not guard.retry(0, flag)  # skip: never retried
    layer.weight.grad = torch.ones_like(layer.weight)
    assert not bool(guard.step(optimizer, layer.parameters())) and not torch.equal(layer.weight, before)
    assert int(guard.skipped_steps) == 1


def test_retry_runs_the_batch_again_until_the_last_attempt():
    guard = StepGuard("retry")
    assert len(guard.attempts()) == 1 + MAX_RETRIES
    layer, optimizer = network_with_grad(float("inf"))
    flag = guard.step(optimizer, layer.parameters())
    assert guard.retry(0) and int(guard.retried_steps) == 1  # known on the host already: no flag needed
    assert not guard.retry(MAX_RETRIES, flag)  # the last attempt: dropped, not retried
    assert guard.block(0, flag) is None  # foreach Adam: nothing to block on the device


def test_fused_retry_blocks_the_next_step_and_reads_both_flags_once():
    guard = StepGuard("retry", fused=True)
    critic, critic_opt = network_with_grad(float("nan"), fused=True)
    generator, generator_opt = network_with_grad(1.0, fused=True)
    dropped = guard.step(critic_opt, critic.parameters())
    assert not guard.retry(0)  # unread on the host: the decision waits for the generator's step
    blocked = guard.block(0, dropped)
    before = generator.weight.detach().clone()
    generator_dropped = guard.step(generator_opt, generator.parameters(), blocked=blocked)
    assert torch.equal(generator.weight, before)  # blocked on the device by the critic's flag, not counted
    assert int(guard.skipped_steps) == 1 and guard.retry(0, generator_dropped | blocked)


def test_the_check_sees_any_inf_or_nan():
    layer = nn.Linear(3, 3)
    assert not bool(grads_nonfinite(layer.parameters()))  # no gradients yet
    layer.weight.grad = torch.zeros_like(layer.weight)
    assert not bool(grads_nonfinite(layer.parameters()))
    layer.weight.grad[1, 2] = float("-inf")
    assert bool(grads_nonfinite(layer.parameters()))
    with pytest.raises(ValueError, match="nonfinite_step must be 'retry' or 'skip'"):
        StepGuard("ignore")
