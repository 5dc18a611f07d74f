"""`python -m archc` is the `archc` command."""

import sys

from archc.cli import main

if __name__ == "__main__":
    sys.exit(main())
