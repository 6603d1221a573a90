"""The web pages, one module per group; each builds a router over the shared WebContext."""
