"""Video anonymization on a synthetic clip with known faces (``data.demo.clip``): leak rate, flicker, speed, memory.

    python bench/video.py [--frames 90] [--drop 0.2] [--rss-seconds 10 60] [--paper-frames 12]

1. Leak rate: the share of true face boxes, over all frames, left with the original pixels (more than half of
   the box's pixels exactly as in the input), with ``--drop`` of the detections removed at random; tracked
   (``gan.anonymize.video.FaceTracker``, ``--max-gap`` 10) vs per frame (only the detections). Also the mean share
   of true-box pixels left original.
2. Flicker: the mean absolute change inside the face box from one frame to the next after undoing the known
   motion (whole pixels), tracked (one latent per track, smoothed box) vs per frame with a new random latent in
   every frame; frames where the face was left original are not counted.
3. Frames per second of ``python -m gan.anonymize`` on the clip (decode, track, generate, encode) with a generator
   of the paper's width (c = 512, 128 px, untrained: speed only), torch on this CPU.
4. Peak RSS of ``python -m gan.anonymize`` on 1080p clips of each ``--rss-seconds`` length (30 fps, the demo width):
   streaming keeps it flat.
Measured in memory for 1 and 2 (no encoding noise), through the command for 3 and 4.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from data.demo.clip import make_clip  # noqa: E402 (after the path above)
from data.detections import parse_face  # noqa: E402
from gan.anonymize import Anonymizer  # noqa: E402
from gan.anonymize.video import FaceTracker, VideoReport  # noqa: E402
from gan.export import export  # noqa: E402
from gan.generator import Generator, GeneratorConfig  # noqa: E402


def frames_of(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def box_slices(box) -> tuple[slice, slice]:
    x0, y0, x1, y1 = (int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3])))
    return slice(y0, y1), slice(x0, x1)


def run(frames, detections, anonymizer: Anonymizer, tracked: bool, drop: float, seed: int = 0):
    """Anonymised frames: tracked (one latent per track) or per frame (the kept detections, a new latent each)."""
    rng = np.random.default_rng(seed)
    kept = [[face for face in faces if rng.random() >= drop] for faces in detections]
    tracker, report = FaceTracker(10), VideoReport()
    out = []
    for index, (frame, faces) in enumerate(zip(frames, kept, strict=True)):
        if tracked:
            planned = tracker.update(faces, report)
            boxes = [p[0] for p in planned]
            points = [p[1] for p in planned]
            ids = [p[2] for p in planned]
        else:
            boxes, points = [f.box for f in faces], [f.keypoints for f in faces]
            ids = [index * 100 + i for i in range(len(faces))]  # a new latent in every frame
        (result, _), = anonymizer.many([frame], [np.array(boxes).reshape(-1, 4)],
                                       [np.array(points).reshape(-1, 7, 2)], [0], face_ids=[ids])
        out.append(result)
    return out, report


def leaks(frames, results, truth) -> tuple[float, float]:
    leaked, shares = 0, []
    for frame, result, faces in zip(frames, results, truth, strict=True):
        for face in faces:
            rows, cols = box_slices(face.box)
            same = (frame[rows, cols] == result[rows, cols]).all(axis=-1).mean()
            shares.append(same)
            leaked += int(same > 0.5)
    return leaked / len(shares), float(np.mean(shares))


def flicker(frames, results, truth) -> float:
    changes = []
    for t in range(1, len(results)):
        a, b = truth[t - 1][0].box, truth[t][0].box
        ra, ca = box_slices(a)
        rb, cb = box_slices(b)
        h, w = min(ra.stop - ra.start, rb.stop - rb.start), min(ca.stop - ca.start, cb.stop - cb.start)
        prev = results[t - 1][ra.start : ra.start + h, ca.start : ca.start + w].astype(float)
        cur = results[t][rb.start : rb.start + h, cb.start : cb.start + w].astype(float)
        orig_prev = frames[t - 1][ra.start : ra.start + h, ca.start : ca.start + w]
        orig_cur = frames[t][rb.start : rb.start + h, cb.start : cb.start + w]
        if (prev == orig_prev).all(-1).mean() > 0.5 or (cur == orig_cur).all(-1).mean() > 0.5:
            continue  # a leaked frame: not a generated face
        changes.append(np.abs(cur - prev).mean())
    return float(np.mean(changes))


def peak_rss(command: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB of ``command``, measured in a fresh parent so that no earlier child counts; seconds)."""
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, "
             "stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    started = time.perf_counter()
    kib = subprocess.run([sys.executable, "-c", probe, *command], check=True, capture_output=True, text=True).stdout
    return int(kib) / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--drop", type=float, default=0.2)
    parser.add_argument("--paper-frames", type=int, default=12)
    parser.add_argument("--rss-seconds", type=int, nargs="*", default=[10, 60])
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        demo = export(Generator(GeneratorConfig(32), 32), tmp / "demo-export", "floor", onnx=False)
        clip = tmp / "clip.mp4"
        detections = make_clip(clip, frames=args.frames)
        truth = [[parse_face(f, "clip") for f in faces] for faces in detections]
        frames = frames_of(clip)
        anonymizer = Anonymizer.from_export(demo, seed=1)
        for mode in ("tracked", "per-frame"):
            out, report = run(frames, truth, anonymizer, mode == "tracked", args.drop)
            rate, share = leaks(frames, out, truth)
            full, _ = run(frames, truth, anonymizer, mode == "tracked", 0.0)
            results[mode] = {"leak_rate": rate, "original_pixel_share": share, "flicker": flicker(frames, full, truth),
                             "filled_by_tracking": report.faces_filled_by_tracking}
        print(f"{args.frames} frames, {args.drop:.0%} of the detections dropped at random (seed 0)")
        print("| mode | leak rate | original pixels in true boxes | flicker (mean |change|, levels) |")
        print("|---|---|---|---|")
        for mode, r in results.items():
            print(f"| {mode} | {r['leak_rate']:.1%} | {r['original_pixel_share']:.1%} | {r['flicker']:.2f} |")
        ratio = results["per-frame"]["flicker"] / results["tracked"]["flicker"]
        print(f"flicker ratio per-frame / tracked: {ratio:.1f}x")

        paper = export(Generator(GeneratorConfig(512), 128), tmp / "paper-export", "floor", onnx=False)
        short = tmp / "in" / "short.mp4"
        short.parent.mkdir()
        short_detections = make_clip(short, frames=args.paper_frames)
        (tmp / "short.json").write_text(json.dumps({"short.mp4": short_detections}))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gan.anonymize", "--model", str(paper), "--input", str(short), "--output",
                        str(tmp / "out-paper"), "--detections", str(tmp / "short.json"), "--seed", "1"], check=True,
                       stdout=subprocess.DEVNULL, cwd=ROOT)
        fps = args.paper_frames / (time.perf_counter() - started)
        print(f"paper width (c = 512, 128 px), {torch.get_num_threads()} threads: {fps:.2f} frames/s "
              f"(1 face per frame, 480x320, including start-up)")
        results["paper_fps"] = fps

        for seconds in args.rss_seconds:
            big = tmp / "hd" / f"hd{seconds}.mp4"
            big.parent.mkdir(exist_ok=True)
            hd = make_clip(big, frames=30 * seconds, fps=30, canvas=(1920, 1080), scale=2.0)
            (tmp / f"hd{seconds}.json").write_text(json.dumps({big.name: hd}))
            rss, took = peak_rss([sys.executable, "-m", "gan.anonymize", "--model", str(demo), "--input", str(big),
                                  "--output", str(tmp / f"out-hd{seconds}"), "--detections",
                                  str(tmp / f"hd{seconds}.json")])
            print(f"1080p, {seconds} s at 30 fps: peak RSS {rss:.0f} MiB, {took:.0f} s "
                  f"({30 * seconds / took:.1f} frames/s, demo width)")
            results[f"rss_mib_{seconds}s"] = rss
            big.unlink()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
