"""Parameters and forward FLOPs per image of the generator and discriminator.

    python bench/model_size.py [--base-width 512] [--resolution 128]

FLOPs are counted by torch.utils.flop_counter.FlopCounterMode (a multiply-add counts as 2) on
meta tensors, so the paper model is measured in a second without allocating its activations.
"""

import argparse

import torch
from flops import count_flops

from gan import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-width", type=int, default=512)
    parser.add_argument("--resolution", type=int, default=128)
    args = parser.parse_args()
    r = args.resolution
    with torch.device("meta"):
        generator = Generator(GeneratorConfig(args.base_width), r)
        discriminator = Discriminator(DiscriminatorConfig(), args.base_width, r)
        image, mask = torch.empty(1, 3, r, r), torch.zeros(1, 1, r, r)
        keypoints, z = torch.empty(1, 7, 2), torch.empty(1, *generator.latent_shape)
        g_flops = count_flops(lambda: generator(image, mask, keypoints, z, resolution=r))
        d_flops = count_flops(lambda: discriminator(image, image, keypoints, resolution=r))
    print(f"model: base width {args.base_width}, resolution {r} px, batch 1")
    for name, net, flops in (("generator", generator, g_flops), ("discriminator", discriminator, d_flops)):
        params = sum(p.numel() for p in net.parameters())
        print(f"{name:>14}: {params / 1e6:8.3f} M parameters  {flops / 1e9:8.2f} GFLOP per forward")


if __name__ == "__main__":
    main()
