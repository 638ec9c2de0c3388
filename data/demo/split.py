"""``python -m data.demo.split OUT``: a train/val split of the demo photos for the downstream experiment.

Four photos to train on (astronaut, biden, obama, obama3) and two others to test on (grace_hopper, obama2: Obama is
in both parts, in different photos; no photo is), each photo written with
``--variants`` copies (default 8) at a random scale (0.5-1) and with jittered colours, and a detections file
per part (boxes and keypoints scaled with the photo)::

    OUT/train/*.jpg  OUT/train.json  OUT/val/*.jpg  OUT/val.json

The same on every machine (fixed seed). Six faces make a toy experiment: enough to run the command and tell a
black box from the original, not to rank anonymizers.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from data.demo import HERE, _jitter_colours

VAL = ("grace_hopper.jpg", "obama2.jpg")  # grace_hopper and one Obama photo; the other Obamas train


def write_split(out: str | Path, variants: int = 8, seed: int = 0) -> dict[str, int]:
    out = Path(out)
    annotations = json.loads((HERE / "annotations.json").read_text())
    rng = np.random.default_rng(seed)
    tables: dict[str, dict] = {"train": {}, "val": {}}
    for name, faces in sorted(annotations.items()):
        part = "val" if name in VAL else "train"
        (out / part).mkdir(parents=True, exist_ok=True)
        photo = Image.open(HERE / "photos" / name).convert("RGB")
        for v in range(variants + 1):
            scale = 1.0 if v == 0 else float(rng.uniform(0.5, 1.0))
            size = (round(photo.width * scale), round(photo.height * scale))
            image = np.asarray(photo.resize(size, Image.Resampling.LANCZOS))
            image = image if v == 0 else _jitter_colours(image, rng)
            file = f"{Path(name).stem}_{v}.jpg"
            Image.fromarray(image).save(out / part / file, quality=95)
            tables[part][file] = [{"box": [c * scale for c in face["box"]],
                                   "keypoints": [None if p is None else [p[0] * scale, p[1] * scale]
                                                 for p in face["keypoints"]]} for face in faces]
    for part, table in tables.items():
        (out / f"{part}.json").write_text(json.dumps(table, indent=1) + "\n")
    return {part: len(table) for part, table in tables.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--variants", type=int, default=8, help="scaled, colour-jittered copies per photo")
    args = parser.parse_args(argv)
    counts = write_split(args.out, args.variants)
    print(f"wrote {counts['train']} training and {counts['val']} validation photos to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
