"""``python -m helpers``: the study's command line (the same as ``python -m helpers.study``)."""

import sys

from helpers.runner.cli import main

if __name__ == "__main__":
    sys.exit(main())
