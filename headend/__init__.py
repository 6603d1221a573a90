"""The LoaXa headend: one package per concern; docs/architecture.md maps them."""
