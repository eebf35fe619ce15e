"""Imported only by the decode forkserver's preload (indexer/pipeline.py), never by the indexer:
the forkserver dies with the run that started it, and leaves Ctrl-C to it (the workers it
forks inherit that)."""

from indexer.lifeline import die_with_parent, ignore_interrupts

ignore_interrupts()
die_with_parent()
