"""Benchmarks for imgsearch (issue #4): `python benchmarks/run.py --photos DIR [--quick]`."""
