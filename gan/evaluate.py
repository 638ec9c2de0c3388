"""FID of a trained generator on a dataset split.

    python -m gan.evaluate --checkpoint checkpoints/demo/last.ckpt --data data/demo/prepared [--split val]
        [--num 10000] [--extractor onet] [--resolution R] [--batch-size 64] [--device cuda]
        [--report fid.json] [--tensorboard checkpoints/demo/logs]

Loads the EMA generator, computes FID with z = 0 (the paper's protocol) and with random z (fixed seed)
at the checkpoint's resolution (or ``--resolution``), both against the same real statistics, and writes a
JSON report. The extractor's name is part of every number: FIDs from different extractors differ in scale.
"""

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from data.record import DataError, collate
from data.sources import open_dataset
from gan.checkpoint import ema_generator_from_checkpoint
from gan.features import EXTRACTORS, build_extractor
from gan.fid import FIDEvaluator


def evaluate(checkpoint: str, data: str, split: str = "val", num: int | None = None, extractor: str = "onet",
             weights_path: str | None = None, resolution: int | None = None, batch_size: int = 64,
             device: str = "cpu", workers: int = 0, seed: int = 0, progress: bool = True,
             output: str = "composited") -> dict:
    generator, meta = ema_generator_from_checkpoint(checkpoint)
    generator.to(device)
    stage, rounding = meta["stage"], meta["hyper_parameters"]["box_rounding"]  # the rule it was trained with
    if resolution is None:
        resolution, alpha = stage["resolution"], stage["alpha"]
    else:
        alpha = 1.0
    dataset = open_dataset(data, split)  # type: ignore[arg-type]
    count = len(dataset) if num is None else min(num, len(dataset))
    loader = DataLoader(Subset(dataset, range(count)), batch_size=batch_size, num_workers=workers, collate_fn=collate)
    evaluator = FIDEvaluator(build_extractor(extractor, weights_path), extractor)
    report = {"checkpoint": str(checkpoint), "images_seen": meta["images_seen"], "data": str(data), "split": split,
              "num_images": count, "resolution": resolution, "alpha": alpha, "extractor": extractor, "output": output,
              "fid": {}}
    started = time.perf_counter()
    for z in ("zero", "random"):
        batches = tqdm(loader, desc=f"FID z={z}", disable=not progress)
        report["fid"][f"z={z}"] = evaluator(generator, batches, resolution, rounding, alpha, z, seed, device, output)
    report["seconds"] = round(time.perf_counter() - started, 2)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a training checkpoint (.ckpt)")
    parser.add_argument("--data", required=True, help="prepared folder, FDF release or DeepPrivacy layout")
    parser.add_argument("--split", choices=["train", "val"], default="val")
    parser.add_argument("--num", type=int, help="first N faces of the split (default: all)")
    parser.add_argument("--extractor", choices=EXTRACTORS, default="onet")
    parser.add_argument("--weights-path", help="local weights of the extractor (the TorchScript file for torchscript)")
    parser.add_argument("--resolution", type=int, help="default: the checkpoint's current resolution")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random latents")
    parser.add_argument("--output", choices=["composited", "raw"], default="composited",
                        help="raw: the whole generated crop (the paper's FID protocol, with --extractor inception)")
    parser.add_argument("--report", help="write the JSON report here (default: print only)")
    parser.add_argument("--tensorboard", help="also write the FIDs as TensorBoard scalars into this folder")
    args = parser.parse_args(argv)
    try:
        report = evaluate(args.checkpoint, args.data, args.split, args.num, args.extractor, args.weights_path,
                          args.resolution, args.batch_size, args.device, args.workers, args.seed, output=args.output)
    except (DataError, FileNotFoundError, ImportError, ValueError, pickle.UnpicklingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    text = json.dumps(report, indent=1)
    print(text)
    if args.report:
        Path(args.report).write_text(text + "\n")
    if args.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(args.tensorboard) as writer:
            for z, fid in report["fid"].items():
                tag = f"eval/fid/{args.extractor}/{report['resolution']}px/{z}"
                writer.add_scalar(tag, fid, report["images_seen"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
