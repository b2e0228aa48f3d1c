"""``python -m signalprop`` (and ``torchrun ... -m signalprop``): the command line."""

from __future__ import annotations

import sys

from signalprop.cli import main

if __name__ == "__main__":
    sys.exit(main())
