"""The `loaxa` command: main.py parses and dispatches, one module per command group over
common.py."""
