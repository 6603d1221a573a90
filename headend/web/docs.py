"""The API's description for people who log in: /docs (Swagger UI) and /openapi.json.

FastAPI's own /docs loads Swagger UI from a CDN (blank on a commune's offline network) and
is open to anyone; here both are behind the login, and Swagger UI's files are served by the
app from the `fastapi-offline` package (Swagger UI 5, Apache-2.0; only its static files are
used). Its start-up script is a file of ours (static/docs.js), as the Content-Security-Policy
allows no inline script.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import fastapi_offline
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from headend.core.auth import VIEW, Principal
from headend.web.context import WebContext

ASSETS_DIR: Final = Path(fastapi_offline.__file__).parent / "static"
# Only what the page loads (the package also holds ReDoc, which this app does not serve).
ASSETS: Final = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
                 "favicon.png": "image/png"}
PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>LoaXa API</title>
<link rel="icon" href="/docs/assets/favicon.png">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi="/openapi.json"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body>
</html>
"""


def docs_router(ctx: WebContext, app: FastAPI) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    me_dep = Depends(ctx.user)

    @r.get("/docs")
    def docs(me: Principal = me_dep) -> HTMLResponse:
        me.check(VIEW)
        return HTMLResponse(PAGE)

    @r.get("/docs/assets/{name}")
    def asset(name: str, me: Principal = me_dep) -> FileResponse:
        me.check(VIEW)
        if name not in ASSETS:
            raise HTTPException(404)
        return FileResponse(ASSETS_DIR / name, media_type=ASSETS[name])

    @r.get("/openapi.json")
    def openapi(me: Principal = me_dep) -> JSONResponse:
        me.check(VIEW)
        schema: dict[str, Any] = app.openapi()
        return JSONResponse(schema)

    return r
