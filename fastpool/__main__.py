"""``python -m fastpool``: the same as the ``fastpool`` command (see :mod:`fastpool.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
