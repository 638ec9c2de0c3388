"""``python -m gan.anonymize``: the entry point wires the command line (``gan.anonymize.cli``) to the Lightning
runner of ``--devices`` jobs (``gan.training.sharded``), so it counts as the top layer, like ``train.py``."""

import sys

from gan.anonymize.cli import main
from gan.training.sharded import run_sharded

sys.exit(main(runner=run_sharded))
