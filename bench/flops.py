"""FLOP counting shared by the benchmarks (a multiply-add counts as 2 FLOP)."""

from torch.utils.flop_counter import FlopCounterMode, _FlopCounterMode


def count_flops(fn) -> int:
    """FLOPs of ``fn()``, counted by torch.utils.flop_counter. Only its counting dispatch mode is entered:
    the per-module tracker of FlopCounterMode cannot follow ``autograd.grad(create_graph=True)`` (the
    gradient penalty)."""
    counter = FlopCounterMode(display=False)
    with _FlopCounterMode(counter):
        fn()
    return counter.get_total_flops()
