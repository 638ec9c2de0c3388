"""Convert FDF (official release or DeepPrivacy layout) to the prepared format.

    python -m data.convert SOURCE OUT [--split train] [--skip-bad] [--workers 2]

A bad sample stops the conversion with an error naming its file and index, unless ``--skip-bad``:
then it is counted, warned about and listed in the output's manifest.json.
"""

import argparse
import sys
import warnings

from tqdm import tqdm

from data.prepared import write_prepared
from data.record import DataError
from data.sources import iterate_checked, open_dataset


def convert(source: str, out: str, split: str = "train", skip_bad: bool = False, workers: int = 0,
            overwrite: bool = False, progress: bool = True) -> dict:
    dataset = open_dataset(source, split)  # type: ignore[arg-type]

    def records():
        for item in tqdm(iterate_checked(dataset, workers), total=len(dataset), disable=not progress, desc="convert"):
            if isinstance(item, DataError) and not skip_bad:
                raise item
            yield item

    manifest = write_prepared(out, records(), source=f"{type(dataset).__name__}:{source}:{split}",
                              capacity=len(dataset), overwrite=overwrite)
    if manifest["skipped_count"]:
        warnings.warn(
            f"{out}: skipped {manifest['skipped_count']} of {len(dataset)} samples "
            f"{manifest['skipped_by_problem']} (listed in manifest.json)", stacklevel=2
        )
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("out")
    parser.add_argument("--split", choices=["train", "val"], default="train")
    parser.add_argument("--skip-bad", action="store_true", help="skip (and list) bad samples instead of stopping")
    parser.add_argument("--workers", type=int, default=0, help="processes decoding PNGs")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        manifest = convert(args.source, args.out, args.split, args.skip_bad, args.workers, args.overwrite)
    except (DataError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {manifest['count']} samples to {args.out} (skipped {manifest['skipped_count']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
