"""Benchmarks (`loaxa bench ...`): one module each, registered in commands.py, sharing
common.py. Figures in docs/benchmarks.md."""
