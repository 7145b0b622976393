"""The study's command line, the entry point the README documents: ``python -m helpers.study run ...``.

The runner lives in :mod:`helpers.runner`; this module only starts its command line.
"""

import sys

from helpers.runner.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
