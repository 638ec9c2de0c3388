"""Train DeepPrivacy: ``python train.py --config configs/deepprivacy.yaml``."""

import sys

if __name__ == "__main__":
    sys.exit("train.py: training is not yet available in this version of SafeFakes (networks only).")
