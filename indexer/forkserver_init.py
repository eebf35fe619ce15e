"""Imported only by the decode forkserver's preload (indexer/pipeline.py), never by the indexer:
the forkserver dies with the run that started it."""

from indexer.lifeline import die_with_parent

die_with_parent()
