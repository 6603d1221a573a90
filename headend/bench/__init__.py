"""Benchmarks (`loaxa bench ...`): one module each, registered in commands.py, sharing
common.py. Figures in docs/benchmarks.md."""

import warnings

# The web and diary benchmarks drive the app in-process through Starlette's TestClient, whose
# use of httpx Starlette now flags as deprecated; that note is not the technician's concern.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
