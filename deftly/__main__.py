"""`python -m deftly ...`: the `deftly` command (see deftly.cli)."""
import sys

from deftly.cli import main

if __name__ == "__main__":
    sys.exit(main())
