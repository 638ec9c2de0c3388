"""``python -m data.demo [OUT]``: build the demo set in the prepared format (default data/demo/prepared)."""

import sys

from data.demo import DEFAULT_OUT, build_demo

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    manifest = build_demo(out)
    print(f"wrote {manifest['count']} demo samples to {out}")
