"""Defenses: data transforms between a teacher's dataset and its students (see :mod:`benchmark.lm.defenses.base`)."""

from benchmark.lm.defenses.base import DEFENSES, NONE, Defense, Scores, Vocab, defense_names, plugin

__all__ = ["DEFENSES", "NONE", "Defense", "Scores", "Vocab", "defense_names", "plugin"]
