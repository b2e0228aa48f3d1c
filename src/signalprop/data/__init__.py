"""Datasets for signalprop: image classification, MNIST-1D and seeded synthetic tasks.

``load(name, seed=..., **options)`` returns :class:`Splits`; ``dataset_names()`` lists
the names and ``is_available(name)`` says whether a dataset's files can be found.
"""

from signalprop.data.download import download
from signalprop.data.registry import dataset_names, is_available, load, options_of
from signalprop.data.sequences import sequential_view
from signalprop.data.splits import Splits

__all__ = [
    "Splits",
    "dataset_names",
    "download",
    "is_available",
    "load",
    "options_of",
    "sequential_view",
]
