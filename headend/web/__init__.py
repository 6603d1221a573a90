"""The officer's web app: app.py assembles it (pages, the JSON API, media for nodes),
context.py is what every page and endpoint shares, pages/ holds one module per page group."""
