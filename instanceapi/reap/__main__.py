"""`python -m instanceapi.reap`: the same as `instanceapi reap`."""

import sys

from instanceapi.reap.cli import main

if __name__ == "__main__":
    sys.exit(main())
