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


def conv_flops_per_second(channels: int, resolution: int, batch: int, device: str = "cpu",
                          seconds: float = 2.0) -> float:
    """FLOP/s of a plain 3x3 conv (channels -> channels, forward + backward) at ``batch`` x ``resolution``^2, in
    bf16 autocast on a GPU and fp32 on a CPU: what the device reaches on the models' simplest layer."""
    import time

    import torch

    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, device=device)
    x = torch.randn(batch, channels, resolution, resolution, device=device, requires_grad=True)
    cuda = torch.device(device).type == "cuda"

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            conv(x).float().sum().backward()
        if cuda:
            torch.cuda.synchronize()

    flops = count_flops(step)
    for _ in range(3):
        step()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        runs += 1
    return flops * runs / (time.perf_counter() - start)
