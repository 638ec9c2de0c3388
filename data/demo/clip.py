"""A synthetic video with known faces: a demo photo moved across a larger canvas, so the true face box and
keypoints of every frame are the photo's annotation shifted by the motion. Tests and ``bench/video.py`` use it.

    python -m data.demo.clip OUT.mp4 [--frames 60] [--fps 15] [--photo obama.jpg]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from data.demo import HERE

PHOTOS = HERE / "photos"


def motion(frame: int, frames: int, room: tuple[int, int]) -> tuple[int, int]:
    """Whole-pixel offset of the photo in ``frame``: across the room and back, with a little vertical sway."""
    t = frame / max(frames - 1, 1)
    x = room[0] * (1 - abs(2 * t - 1))
    y = room[1] * (0.5 + 0.5 * np.sin(2 * np.pi * t))
    return int(round(x)), int(round(y))


def make_clip(out: str | Path, frames: int = 60, fps: int = 15, photo: str = "obama.jpg",
              canvas: tuple[int, int] = (480, 320), scale: float = 0.5) -> list[list[dict]]:
    """Write ``out`` (H.264) and return its detections (``data.detections`` video format: per frame a list with the
    face's box and keypoints in frame pixels)."""
    import av

    image = Image.open(PHOTOS / photo).convert("RGB")
    image = image.resize((int(image.width * scale), int(image.height * scale)), Image.Resampling.BOX)
    face = json.loads((HERE / "annotations.json").read_text())[photo][0]
    box, points = np.array(face["box"]) * scale, face["keypoints"]
    room = (canvas[0] - image.width, canvas[1] - image.height)
    if min(room) < 0:
        raise ValueError(f"the canvas {canvas} is smaller than the photo {image.size}")
    background = np.linspace(40, 200, canvas[0] * canvas[1] * 3).reshape(canvas[1], canvas[0], 3).astype(np.uint8)
    detections = []
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = canvas[0], canvas[1], "yuv420p"
        stream.options = {"crf": "12"}
        for f in range(frames):
            dx, dy = motion(f, frames, room)
            rgb = background.copy()
            rgb[dy : dy + image.height, dx : dx + image.width] = np.asarray(image)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
            shift = np.array([dx, dy, dx, dy], dtype=float)
            keypoints = [None if p is None else [p[0] * scale + dx, p[1] * scale + dy] for p in points]
            detections.append([{"box": (box + shift).round(2).tolist(), "keypoints": keypoints}])
        for packet in stream.encode():
            container.mux(packet)
    return detections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--photo", default="obama.jpg")
    args = parser.parse_args(argv)
    detections = make_clip(args.out, args.frames, args.fps, args.photo)
    Path(args.out).with_suffix(".json").write_text(json.dumps({Path(args.out).name: detections}))
    print(f"wrote {args.out} ({args.frames} frames) and its detections {Path(args.out).with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
