import sys

from gan.anonymize.cli import main

sys.exit(main())
