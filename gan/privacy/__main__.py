import sys

from gan.privacy.cli import main

sys.exit(main())
