import sys

from convexdict.cli import main

sys.exit(main())
