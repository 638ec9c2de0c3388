"""Fault campaign: kill, preempt and damage tiny training runs, resume them with the same command, and check that
nothing but the images since the last complete checkpoint is lost and that the final networks are bit-identical
to an uninterrupted run.

    python bench/faults.py                          # 24 kill -9 trials, 4 SIGTERM trials, 2 DDP trials
    python bench/faults.py --trials 40 --ddp-trials 4 --seed 3

Every run is ``python train.py --config <tiny config>`` (width 8, 8 -> 32 px, 96 images, a checkpoint every 24
images and at each growth, ``ckpt_path: last``), each step made 40 ms slower so that a kill can land anywhere.
- kill -9: a random moment, chosen as a random images-seen target and a random delay after it; half the trials
  write their output to a file (plain lines), half to a pseudo-terminal (tqdm bar); every third trial (the 2nd,
  5th, ...) aims at a checkpoint being written (the disk made slow, the kill landing inside the write). The same
  command is run again until it ends.
- SIGTERM (SLURM preemption): exit status 143, a checkpoint at the images seen, then the same command.
- DDP: 2 processes over gloo, one rank (alternately the launched rank 1 and the launching rank 0) killed with
  kill -9: the time until every process has exited, then the same command.
Lost images = images seen when killed - images of the checkpoint the rerun resumed from; the rerun must resume
from the newest checkpoint that was complete at the kill. Prints a Markdown table and one JSON line.
"""

import argparse
import json
import os
import pty
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]  # this checkout's code, also in the training processes the campaign starts

from data.demo import build_demo  # noqa: E402 (after the path above)
from gan.training.checkpointing import NAME, verify  # noqa: E402

TOTAL = 96
EVERY = 24
STEP_SECONDS = 0.04
RESUMED = re.compile(r"ckpt_path=last: resuming from (\S+) \((\d+) images\)")


def write_config(folder: Path, data: Path, devices: int = 1, slow_disk: bool = False) -> Path:
    """A tiny run whose checkpoints, progress record and final weights land in ``folder``."""
    helpers = "tests.helpers."
    callbacks = [{"class_path": helpers + "RecordProgress", "init_args": {"path": str(folder / "progress")}},
                 {"class_path": helpers + "SlowSteps", "init_args": {"seconds": STEP_SECONDS}},
                 {"class_path": helpers + "DumpWeights", "init_args": {"folder": str(folder / "weights")}}]
    if slow_disk:
        callbacks.append({"class_path": helpers + "SlowDisk",
                          "init_args": {"seconds": 0.4, "marker": str(folder / "saving")}})
    trainer = {"accelerator": "cpu", "devices": devices, "precision": "32-true", "log_every_n_steps": 1,
               "enable_progress_bar": True, "enable_model_summary": False, "logger": False, "callbacks": callbacks}
    if devices > 1:
        trainer["strategy"] = "ddp_find_unused_parameters_true"
    config = {
        "seed_everything": 0,
        "model": {"generator": {"base_width": 8}, "ema_half_life_images": 100,
                  "schedule": {"start_resolution": 8, "max_resolution": 32, "fade_images": 16, "stabilize_images": 16,
                               "batch_sizes": {8: 8, 16: 8, 32: 4}, "total_images": TOTAL}},
        "data": {"train_path": str(data), "num_val": 8, "num_workers": 0},
        "trainer": trainer,
        "checkpoint": {"dirpath": str(folder / "ckpt"), "every_images": EVERY, "keep_last": 3},
        "fid": {"extractor": None}, "samples": {"num": 4, "every_images": 0}, "privacy": {"num": 0},
        "export_onnx": False, "ckpt_path": "last",
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Run:
    """``python train.py --config ...`` with its output going to a file or to a pseudo-terminal."""

    def __init__(self, config: Path, log: Path, terminal: bool = False) -> None:
        command = [sys.executable, "train.py", "--config", str(config)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.log = log
        self._reader = None
        if terminal:
            master, slave = pty.openpty()
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=slave, stdout=slave, stderr=slave,
                                            start_new_session=True)
            os.close(slave)
            self._reader = threading.Thread(target=self._drain, args=(master,), daemon=True)
            self._reader.start()
        else:
            with open(log, "ab") as out:
                self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                start_new_session=True)

    def _drain(self, master: int) -> None:
        with open(self.log, "ab") as out:
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the terminal's last writer has exited
                    break
                if not chunk:
                    break
                out.write(chunk)
        os.close(master)

    def wait(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout)
        if self._reader is not None:
            self._reader.join(10)
        return code


def images_recorded(folder: Path) -> int:
    path = folder / "progress"
    return int(path.read_text()) if path.is_file() else 0


def newest_complete(folder: Path) -> int:
    """Images of the newest checkpoint that verifies (0: none)."""
    found = [int(m.group(1)) for p in (folder / "ckpt").glob("images=*.ckpt") if (m := NAME.match(p.name))]
    return max((n for n in found if verify(folder / "ckpt" / f"images={n:011d}.ckpt") is None), default=0)


def final_weights(folder: Path, rank: int = 0) -> dict:
    return torch.load(folder / "weights" / f"rank{rank}.pt", weights_only=True)


def identical(a: dict, b: dict) -> bool:
    return all(torch.equal(a[name], b[name]) for name in ("G", "D", "G_ema", "images_seen"))


def reference(root: Path, data: Path, devices: int = 1) -> dict:
    folder = root / f"reference-{devices}"
    run = Run(write_config(folder, data, devices), folder / "log")
    if run.wait() != 0:
        raise RuntimeError(f"the uninterrupted run failed; see {folder / 'log'}")
    return final_weights(folder)


def wait_until(condition, timeout: float, process: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def resume(folder: Path, config: Path, terminal: bool) -> tuple[int, int | None, str]:
    """Run the same command again until it ends: (exit status, images it resumed from or None, its output)."""
    log = folder / "log-resumed"
    code = Run(config, log, terminal).wait()
    output = log.read_text(errors="replace")
    found = RESUMED.search(output)
    return code, int(found.group(2)) if found else (0 if "starting from scratch" in output else None), output


def kill_trial(folder: Path, data: Path, rng: random.Random, terminal: bool, during_save: bool) -> dict:
    """kill -9 at a random moment (or inside a checkpoint write), then the same command."""
    config = write_config(folder, data, slow_disk=during_save)
    run = Run(config, folder / "log", terminal)
    if during_save:
        marker = folder / "saving"
        skip = rng.randrange(3)  # which save to hit: the 1st, 2nd or 3rd
        for _ in range(skip):
            wait_until(marker.exists, 120, run.process)
            wait_until(lambda: not marker.exists(), 120, run.process)
        wait_until(marker.exists, 120, run.process)
        time.sleep(rng.uniform(0, 0.45))
    else:
        target = rng.randrange(1, TOTAL)
        wait_until(lambda: images_recorded(folder) >= target, 120, run.process)
        time.sleep(rng.uniform(0, STEP_SECONDS + 0.02))
    os.killpg(run.process.pid, signal.SIGKILL)
    run.wait()
    seen, complete = images_recorded(folder), newest_complete(folder)
    code, resumed_from, output = resume(folder, config, terminal)
    return {"kind": "kill -9", "output": "terminal" if terminal else "file", "during_save": during_save,
            "killed_at": seen, "complete": complete, "resumed": code == 0, "resumed_from": resumed_from,
            "lost": None if resumed_from is None else seen - resumed_from,
            "newest_complete": resumed_from == complete, "log": str(folder / "log-resumed"), "tail": output[-800:]}


def sigterm_trial(folder: Path, data: Path, rng: random.Random) -> dict:
    """SIGTERM (a scheduler preempting the job): status 143 and a checkpoint at the images seen, then the same
    command."""
    config = write_config(folder, data)
    run = Run(config, folder / "log")
    target = rng.randrange(8, TOTAL - 8)
    wait_until(lambda: images_recorded(folder) >= target, 120, run.process)
    run.process.send_signal(signal.SIGTERM)
    status = run.wait()
    seen, complete = images_recorded(folder), newest_complete(folder)
    code, resumed_from, output = resume(folder, config, terminal=False)
    return {"kind": "SIGTERM", "output": "file", "during_save": False, "status": status, "killed_at": seen,
            "complete": complete, "resumed": code == 0, "resumed_from": resumed_from,
            "lost": None if resumed_from is None else seen - resumed_from,
            "newest_complete": resumed_from == complete, "log": str(folder / "log-resumed"), "tail": output[-800:]}


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def ddp_trial(folder: Path, data: Path, rng: random.Random, kill_rank: int) -> dict:
    """Two processes over gloo; rank ``kill_rank`` is killed; how long the other takes to stop; the same command."""
    config = write_config(folder, data, devices=2)
    run = Run(config, folder / "log")
    target = rng.randrange(8, TOTAL - 8)
    wait_until(lambda: images_recorded(folder) >= target, 180, run.process)
    ranks = [run.process.pid] + [pid for pid in children(run.process.pid) if "train.py" in
                                 Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
    victim = ranks[kill_rank]
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    others = [pid for pid in ranks if pid != victim]
    stopped = wait_until(lambda: not any(alive(pid) for pid in others), 300)
    seconds = time.monotonic() - killed
    if not stopped:
        os.killpg(run.process.pid, signal.SIGKILL)
    run.wait()
    seen, complete = images_recorded(folder), newest_complete(folder)
    code, resumed_from, output = resume(folder, config, terminal=False)
    return {"kind": f"DDP, rank {kill_rank} killed", "output": "file", "during_save": False, "killed_at": seen,
            "complete": complete, "others_stopped_s": round(seconds, 1) if stopped else None,
            "resumed": code == 0, "resumed_from": resumed_from,
            "lost": None if resumed_from is None else seen - resumed_from,
            "newest_complete": resumed_from == complete, "log": str(folder / "log-resumed"), "tail": output[-800:]}


def campaign(root: Path, trials: int, sigterm_trials: int, ddp_trials: int, seed: int) -> list[dict]:
    data = root / "demo"
    build_demo(data, variants_per_face=3)
    rng = random.Random(seed)
    results = []
    references = {1: reference(root, data)} if trials or sigterm_trials else {}
    for i in range(trials):
        started = time.perf_counter()
        folder = root / f"kill-{i}"
        result = kill_trial(folder, data, rng, terminal=i % 2 == 1, during_save=i % 3 == 1)  # 6 trials: every pair
        result["bit_identical"] = result["resumed"] and identical(final_weights(folder), references[1])
        results.append({**result, "seconds": time.perf_counter() - started})
    for i in range(sigterm_trials):
        started = time.perf_counter()
        folder = root / f"sigterm-{i}"
        result = sigterm_trial(folder, data, rng)
        result["bit_identical"] = result["resumed"] and identical(final_weights(folder), references[1])
        results.append({**result, "seconds": time.perf_counter() - started})
    if ddp_trials:
        references[2] = reference(root, data, devices=2)
    for i in range(ddp_trials):
        started = time.perf_counter()
        folder = root / f"ddp-{i}"
        result = ddp_trial(folder, data, rng, kill_rank=1 - i % 2)
        result["bit_identical"] = result["resumed"] and all(
            identical(final_weights(folder, rank), references[2]) for rank in (0, 1))
        results.append({**result, "seconds": time.perf_counter() - started})
    return results


def table(results: list[dict]) -> str:
    rows = ["| fault | output | trials | resumed | bit-identical | from newest complete | max images lost | "
            "others stopped (max s) | exit status | s per trial |", "|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        kind = r["kind"] + (" during a checkpoint write" if r["during_save"] else "")
        groups.setdefault((kind, r["output"]), []).append(r)
    for (kind, output), group in groups.items():
        lost = [r["lost"] for r in group if r["lost"] is not None]
        stopped = [r.get("others_stopped_s") for r in group if "others_stopped_s" in r]
        statuses = sorted({r["status"] for r in group if "status" in r})
        rows.append(
            f"| {kind} | {output} | {len(group)} | {sum(r['resumed'] for r in group)} | "
            f"{sum(r['bit_identical'] for r in group)} | {sum(r['newest_complete'] for r in group)} | "
            f"{max(lost) if lost else '-'} | "
            f"{('never' if None in stopped else max(stopped)) if stopped else '-'} | "
            f"{', '.join(map(str, statuses)) or '-'} | {sum(r['seconds'] for r in group) / len(group):.1f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=24, help="kill -9 trials")
    parser.add_argument("--sigterm-trials", type=int, default=4)
    parser.add_argument("--ddp-trials", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None, help="keep every run's folder here")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        results = campaign(root, args.trials, args.sigterm_trials, args.ddp_trials, args.seed)
    print(table(results))
    seconds = time.perf_counter() - started
    print(f"\n{len(results)} trials in {seconds:.0f} s; a checkpoint every {EVERY} images and at each growth, "
          f"{TOTAL} images per run")
    print(json.dumps({"seconds": round(seconds, 1), "trials": [{k: v for k, v in r.items() if k != "tail"}
                                                              for r in results]}))


if __name__ == "__main__":
    main()
