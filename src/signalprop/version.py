"""The installed package's version (``0+unknown`` in a source tree that was never installed).

Its own module so that low layers (:mod:`signalprop.runs` records it with every run) need not
import the package root, which imports the top of the library.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("signalprop")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
