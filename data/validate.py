"""Read every sample of a dataset and report the problems by kind.

    python -m data.validate PATH [--split train] [--workers 2]

Exit status 0 when every sample is usable, 1 otherwise.
"""

import argparse
import sys
from collections import Counter

from tqdm import tqdm

from data.prepared import PreparedDataset
from data.record import DataError
from data.sources import iterate_checked, open_dataset


def validate(path: str, split: str = "train", workers: int = 0, progress: bool = True) -> tuple[int, Counter,
                                                                                                list[DataError]]:
    """(samples read, problem counts, the errors). A dataset that cannot be opened counts as one problem."""
    try:
        dataset = open_dataset(path, split)  # type: ignore[arg-type]
    except DataError as error:
        return 0, Counter({error.problem: 1}), [error]
    errors = []
    if isinstance(dataset, PreparedDataset):
        errors += [DataError("checksum", f"{path}/{name}", "sha256 differs from manifest.json")
                   for name in dataset.verify_checksums()]
    for item in tqdm(iterate_checked(dataset, workers), total=len(dataset), disable=not progress, desc="validate"):
        if isinstance(item, DataError):
            errors.append(item)
    return len(dataset), Counter(e.problem for e in errors), errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--split", choices=["train", "val"], default="train")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--show", type=int, default=20, help="list this many problems")
    args = parser.parse_args(argv)
    count, problems, errors = validate(args.path, args.split, args.workers)
    print(f"{args.path}: {count} samples, {sum(problems.values())} problem(s)")
    for problem, n in problems.most_common():
        print(f"  {problem}: {n}")
    for error in errors[: args.show]:
        print(f"  - {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
