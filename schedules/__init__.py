"""Shipped with LoaXa as the package `loaxa_schedules` (pyproject.toml), so an installed headend
finds the templates and the example commune: see headend/core/paths.py."""
