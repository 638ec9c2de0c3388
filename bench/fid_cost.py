"""What FID costs during training: extractor and EMA-generator throughput, and the share of training time.

    python bench/fid_cost.py [--num-val 10000] [--every-images 1000000] [--tensorboard checkpoints/demo/logs]

Measured on this machine (CPU, fp32): images/s of the ONet extractor and of the paper generator's forward
at 128 px, and their FLOP per image. The share of training time at the paper config is estimated from FLOPs,
``num_val * (G forward + extractor) / (every_images * training FLOP per image)``, which holds on any device where
evaluation runs at the training step's efficiency (it uses the same precision). With ``--tensorboard`` it also
reads the share measured in a finished run (``perf/fid_share``).
"""

import argparse
import time

import torch
from flops import count_flops

from gan.features import ONetFeatures
from gan.generator import Generator, GeneratorConfig

TRAINING_FLOP_PER_IMAGE = 1.73e12  # c = 512 at 128 px: critic step with gradient penalty + generator step


def throughput(fn, batch: int, seconds: float = 3.0) -> float:
    fn()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        runs += 1
    return runs * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-val", type=int, default=10_000)
    parser.add_argument("--every-images", type=int, default=1_000_000)
    parser.add_argument("--tensorboard", help="a finished run's log folder, to read its measured perf/fid_share")
    args = parser.parse_args()
    onet = ONetFeatures()
    images = torch.rand(64, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        onet_rate = throughput(lambda: onet(images), 64)
        onet_flops = count_flops(lambda: onet(images[:1]))
        generator = Generator(GeneratorConfig(512), 128).eval()
        mask = torch.zeros(2, 1, 128, 128)
        mask[..., 38:90, 38:90] = 1
        keypoints, z = torch.rand(2, 7, 2), torch.zeros(2, 32, 4, 4)
        g_rate = throughput(lambda: generator(images[:2], mask, keypoints, z, resolution=128), 2, seconds=6.0)
        g_flops = count_flops(lambda: generator(images[:1], mask[:1], keypoints[:1], z[:1], resolution=128))
    print(f"CPU, {torch.get_num_threads()} threads, fp32, 128 px")
    print(f"ONet extractor:          {onet_rate:8.0f} images/s  {onet_flops / 1e6:8.1f} MFLOP/image")
    print(f"EMA generator (c = 512): {g_rate:8.2f} images/s  {g_flops / 1e9:8.1f} GFLOP/image")
    share = args.num_val * (g_flops + onet_flops) / (args.every_images * TRAINING_FLOP_PER_IMAGE)
    print(f"paper config, FID on {args.num_val} faces every {args.every_images} images: "
          f"{100 * share:.3f} % of training FLOPs (+ the real statistics once per resolution, ONet only)")
    if args.tensorboard:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(args.tensorboard, size_guidance={"scalars": 0}).Reload()
        if "perf/fid_share" in events.Tags()["scalars"]:
            print(f"measured in {args.tensorboard}: FID took {100 * events.Scalars('perf/fid_share')[-1].value:.1f} % "
                  "of the run's wall time")


if __name__ == "__main__":
    main()
