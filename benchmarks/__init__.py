"""Benchmarks; run as scripts (python benchmarks/NAME.py) or import benchmarks.NAME."""
