"""A running headend: `loaxa serve` (serve.py) and the demo commune on one machine (demo.py).
With bench, the only packages that import the simulator."""
