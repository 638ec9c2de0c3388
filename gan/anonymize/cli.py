"""Anonymize photos, photo datasets and videos with an exported generator: every face is replaced (the command line).

    python -m gan.anonymize --model checkpoints/demo/export --input photos/ [more.jpg clip.mp4 ...] --output out/
        [--detections faces.json] [--backend torch|onnx] [--seed 7] [--blur-below 0] [--batch-size 16]
        [--workers N] [--overwrite] [--strict] [--copy-annotations] [--device cpu] [--devices N --num-nodes M]

``--input`` takes files and folders; folders are walked recursively (photos and videos by suffix, hidden files
skipped) and ``--output`` mirrors them: every output has its input's path relative to its folder (a file given
directly: its name). Nothing is written next to the inputs. Faces come from face-alignment (boxes + 7 keypoints;
its weights must be in ``$TORCH_HOME/hub/checkpoints``) or from ``--detections`` (``data.detections``: keyed by the
path relative to the input folder, or by the file name where that is unique; keypoints optional, null = absent).
Each face is cropped the DeepPrivacy way, conditioned by the box rule its generator was trained with, generated
(z = 0 unless ``--seed``; then one latent per face from the seed, the file's path and the face's index), resized
back and pasted inside its box only (``gan.anonymize.anonymizer``). A face without keypoints is generated with all
keypoints absent; with ``--blur-below N`` a face whose box is under N pixels is blurred instead.

Resumable: outputs are written atomically and recorded in ``<output>/.anonymize.jsonl``; running the same command
again skips the complete ones (``gan.anonymize.files`` says how that is decided) and ``--overwrite`` redoes them.
A file that cannot be read, or a detections entry for a file that is not there, is listed in ``report.json`` with
the reason and the job goes on (``--strict``: the first one stops it); the exit status is 1 if any input failed.
No face is left as it was: the report counts how many took each path.

``--devices N`` (and ``--num-nodes M``) runs the same job over N x M processes through Lightning's
``Trainer.predict`` with DDP, each rank taking a deterministic shard of the inputs (``gan.training.sharded``); the
outputs are those of a single process.
"""

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from data.checksum import sha256_file
from data.detections import FaceAlignmentDetector, load_detections, lookup
from data.record import DataError
from gan.anonymize.anonymizer import Anonymizer
from gan.anonymize.files import Item, Journal, check_output, collect, commit, copy_annotations, file_names, temporary
from gan.anonymize.photos import Progress, anonymize_photos, worker_count
from gan.export import ExportError

Runner = Callable[["Job", list[Item], int], bool]  # (job, what is left to do, workers) -> is this rank 0?


class Failed(Exception):
    """``--strict``: the first input that failed stops the job."""


class Job:
    """One anonymization job: its inputs, how their faces are found, where results go, and what happened."""

    def __init__(self, args, items: list[Item], annotations, table, anonymizer: Anonymizer, detector,
                 runner: Runner | None = None) -> None:
        self.args, self.items, self.annotations = args, items, annotations
        self.table, self.anonymizer, self.detector, self.runner = table, anonymizer, detector, runner
        self.output = Path(args.output)
        self.names = file_names(items)
        self.results: dict[str, dict] = {}
        self.failed: list[dict] = []
        self.stopped: str | None = None  # a --devices job's --strict failure, gathered from the rank that met it
        self.terminal = sys.stdout.isatty()
        # In a --devices job every process runs this far; only the first of the first node speaks.
        self.speaks = os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"

    def detector_on(self, device: str):
        return FaceAlignmentDetector(device, self.args.batch_size)

    def settings(self) -> dict:
        """What an output depends on beside its input: a change makes the journal's entries stale."""
        a = self.args
        return {"model": self.anonymizer.generate.meta["sha256"], "backend": a.backend, "seed": a.seed,
                "blur_below": a.blur_below, "quality": a.quality,
                "detections": sha256_file(a.detections) if a.detections else "face-alignment"}

    def fail(self, item: Item | str, reason: str) -> None:
        where = item.relative if isinstance(item, Item) else item
        self.failed.append({"path": where, "reason": reason})
        if self.args.strict:
            raise Failed(f"{item.source if isinstance(item, Item) else where}: {reason}")

    def faces_of(self, item: Item, photo):
        if self.table is None:
            return self.detector(photo)
        return lookup(self.table, item.relative, self.names, str(self.args.detections))

    def run(self) -> int:
        output, journal = self.output, Journal(self.output, self.settings())
        todo = []
        for item in self.items:
            entry = None if self.args.overwrite else journal.complete(item, output / item.relative)
            if entry is not None:
                self.results[item.relative] = {k: v for k, v in entry.items()
                                               if k not in ("relative", "input", "settings")}
            else:
                todo.append(item)
        skipped = len(self.items) - len(todo)
        if skipped and self.speaks:
            print(f"anonymize: {skipped} of {len(self.items)} outputs are complete (see {journal.path.name}); "
                  "doing the rest" + ("" if todo else ": nothing left"), flush=True)
        stopped = None
        try:
            for entry in self.unmatched_entries():
                self.fail(entry, "the detections file has an entry for it, but no such file is in the input")
            if self.runner is not None:
                if not self.runner(self, todo, worker_count(self.args.workers)):
                    return 0  # another rank: rank 0 gathered its results and writes the report
            else:
                self.process(todo, journal)
        except Failed as error:
            stopped = str(error)
        copied = copy_annotations(self.annotations, output) if self.args.copy_annotations and not stopped else 0
        self.write_report(skipped, copied)
        if stopped:
            print(f"error: {stopped} (--strict)", file=sys.stderr)
        elif self.failed:
            print(f"error: {len(self.failed)} input(s) failed; see {output / 'report.json'}", file=sys.stderr)
        return 1 if stopped or self.failed else 0

    def process(self, todo: list[Item], journal: Journal) -> None:
        """Anonymise ``todo`` in this process: photos decoded in DataLoader workers, then the videos."""
        progress = Progress(len(todo), "file", self.terminal)
        try:
            photos = [item for item in todo if item.kind == "photo"]
            for item, summary in anonymize_photos(photos, self.anonymizer, self.faces_of, self.output, journal,
                                                  self.args.quality, worker_count(self.args.workers), self.fail):
                self.results[item.relative] = summary
                progress.update(1, summary["faces"])
            for item in (item for item in todo if item.kind == "video"):
                summary = self.video(item, journal)
                if summary is not None:
                    self.results[item.relative] = summary
                progress.update(1, summary["faces_detected"] if summary else 0)
        finally:
            progress.close()

    def video(self, item: Item, journal: Journal) -> dict | None:
        from gan.anonymize.video import anonymize_video

        frames = None
        if self.table is not None:
            frames = lookup(self.table, item.relative, self.names, str(self.args.detections))
        try:
            summary = anonymize_video(item.source, self.output / item.relative, self.anonymizer, frames,
                                      self.detector, item.key, self.args)
        except DataError as error:
            self.fail(item, error.detail)
            return None
        journal.record(item, summary)
        return summary

    def unmatched_entries(self) -> list[str]:
        """Detections entries that name no input, when the inputs are folders (with single files, a detections file
        may well describe more than this job)."""
        if self.table is None or not any(Path(p).is_dir() for p in self.args.input):
            return []
        relatives = {item.relative for item in self.items}
        return [name for name in self.table if name not in relatives and name not in self.names]

    def write_report(self, skipped: int, copied: int) -> None:
        images = {k: v for k, v in self.results.items() if "frames" not in v}
        videos = {k: v for k, v in self.results.items() if "frames" in v}
        summary = {"generated": sum(r.get("generated", 0) for r in self.results.values()),
                   "generated_without_keypoints": sum(r.get("generated_without_keypoints", 0)
                                                      for r in self.results.values()),
                   "blurred": sum(r.get("blurred", 0) for r in self.results.values()),
                   "files": len(self.items), "complete_before": skipped, "failed": self.failed,
                   "annotations_copied": copied, "images": images, "videos": videos}
        self.output.mkdir(parents=True, exist_ok=True)
        path = self.output / "report.json"
        tmp = temporary(path)
        tmp.write_text(json.dumps(summary, indent=1) + "\n")
        commit(tmp, path)
        print(json.dumps({k: v for k, v in summary.items() if k not in ("images", "videos", "failed")}
                         | {"failed": len(self.failed)}))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="an export folder (gan.export)")
    p.add_argument("--input", required=True, nargs="+", help="photos, videos and folders of them")
    p.add_argument("--output", required=True, help="folder for the anonymized files and report.json")
    p.add_argument("--detections", help="JSON of faces per file (relative path or file name -> faces)")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    p.add_argument("--seed", type=int, help="random latents from this seed (default: z = 0)")
    p.add_argument("--blur-below", type=int, default=0, help="blur instead of generating faces under N px")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality of the outputs (the input's format is kept)")
    p.add_argument("--batch-size", type=int, default=16, help="faces per generator call (of one or more photos)")
    p.add_argument("--workers", type=int, help="DataLoader processes decoding photos (default: up to 4)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that are complete")
    p.add_argument("--strict", action="store_true", help="stop at the first input that fails")
    p.add_argument("--copy-annotations", action="store_true",
                   help="copy the COCO *.json and YOLO *.txt files of the input folders to the same relative paths")
    p.add_argument("--device", default="cpu", help="device for the torch backend and face-alignment (cuda: GPUs)")
    p.add_argument("--devices", type=int, default=1,
                   help="processes (GPUs with --device cuda) per machine: Trainer.predict with DDP, one shard each")
    p.add_argument("--num-nodes", type=int, default=1, help="machines of a --devices job (Lightning's launchers)")
    video = p.add_argument_group("video (gan.anonymize.video)")
    video.add_argument("--crf", type=int, default=18, help="H.264 quality (0-51, lower is better; 18: visually "
                       "lossless)")
    video.add_argument("--keep-audio", action="store_true",
                       help="copy the audio streams (dropped by default: voices identify people too)")
    video.add_argument("--max-gap", type=int, default=10,
                       help="frames a tracked face may go undetected and still be anonymised at its predicted box")
    return p


def main(argv: list[str] | None = None, runner: Runner | None = None) -> int:
    """The command line; ``runner`` runs a ``--devices`` job (``python -m gan.anonymize`` passes
    ``gan.training.sharded.run_sharded``: the Lightning wiring sits above this layer)."""
    args = parser().parse_args(argv)
    sharded = args.devices * args.num_nodes > 1
    if args.devices < 1 or args.num_nodes < 1:
        parser().error("--devices and --num-nodes must be >= 1")
    if sharded and runner is None:
        parser().error("--devices/--num-nodes run through Lightning's launcher: use python -m gan.anonymize")
    if not 1 <= args.quality <= 100:
        parser().error(f"--quality must lie in [1, 100], got {args.quality}")
    if args.batch_size < 1 or not 0 <= args.crf <= 51 or args.max_gap < 0:
        parser().error("--batch-size must be >= 1, --crf in [0, 51] and --max-gap >= 0")
    try:  # every input and the detections file are checked before any model loads; nothing is written on failure
        items, annotations = collect(args.input)
        check_output(Path(args.output), args.input)
        table = load_detections(args.detections) if args.detections else None
        if table is not None:
            names = file_names(items)
            unlisted = [i.relative for i in items if lookup(table, i.relative, names, args.detections) is None]
            if unlisted:
                raise DataError("no_detections_entry", str(args.detections), f"no entry for {', '.join(unlisted)}")
        # A --devices job loads on the CPU; each rank moves the generator (and face-alignment) to its own device.
        device = "cpu" if sharded else args.device
        anonymizer = Anonymizer.from_export(args.model, args.backend, batch_size=args.batch_size, seed=args.seed,
                                            blur_below=args.blur_below, device=device)
        detector = None if table is not None else FaceAlignmentDetector(device, args.batch_size)
    except (DataError, ExportError, FileNotFoundError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    os.makedirs(args.output, exist_ok=True)
    return Job(args, items, annotations, table, anonymizer, detector, runner if sharded else None).run()
