"""Seeded synthetic tasks: spirals, copy memory, adding, delayed recall, cue recall
among distractors, fixed-lag recall and bit stream."""

from signalprop.data.synthetic.adding import load_adding
from signalprop.data.synthetic.bitstream import load_bitstream
from signalprop.data.synthetic.copy_memory import load_copy
from signalprop.data.synthetic.cue_recall import load_cue_recall
from signalprop.data.synthetic.delayed_recall import load_delayed_recall
from signalprop.data.synthetic.lag_recall import load_lag_recall
from signalprop.data.synthetic.spirals import load_spirals

__all__ = [
    "load_adding", "load_bitstream", "load_copy", "load_cue_recall", "load_delayed_recall",
    "load_lag_recall", "load_spirals",
]
