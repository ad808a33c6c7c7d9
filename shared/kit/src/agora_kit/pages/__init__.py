"""The pages a person opens in a browser: offline Swagger UI and ReDoc, the front page, the
event catalogue. Every asset is served by the process itself (no CDN), under a strict CSP."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from agora_kit.pages.catalogue import render_catalogue_html

#: Our own pages (front page, event catalogue): scripts, styles and fetches from this origin.
PAGES_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: Swagger UI: the same, plus data: images and fonts its stylesheet embeds.
SWAGGER_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: ReDoc injects <style> elements at run time (styled-components) and fails without them
#: (measured in Chromium), hence 'unsafe-inline' for styles on this page alone; scripts stay
#: 'self'. Its search index runs in a blob: worker.
REDOC_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: Assets change with the installed package only: a short cache keeps a reload cheap.
_ASSET_CACHE: Final = "public, max-age=300"

_STATIC: Final = Path(__file__).with_name("static")


@cache
def _vendor_dir() -> Path:
    """Return the folder of Swagger UI's and ReDoc's files shipped by ``fastapi-offline``."""
    return Path(str(resources.files("fastapi_offline") / "static"))


#: URL name -> (folder, file, media type). Nothing outside this table is ever served.
_DOCS_ASSETS: Final = {
    "swagger-ui-bundle.js": ("vendor", "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("vendor", "swagger-ui.css", "text/css"),
    "redoc.standalone.js": ("vendor", "redoc.standalone.js", "text/javascript"),
    "favicon.png": ("vendor", "favicon.png", "image/png"),
    "swagger-init.js": ("static", "swagger-init.js", "text/javascript"),
}
_PAGE_ASSETS: Final = {
    "pages.css": ("static", "pages.css", "text/css"),
    "home.js": ("static", "home.js", "text/javascript"),
}


def _asset_path(folder: str, name: str) -> Path:
    return (_vendor_dir() if folder == "vendor" else _STATIC) / name


def _asset_route(
    table: dict[str, tuple[str, str, str]],
) -> Callable[[Request], Awaitable[Response]]:
    async def asset(request: Request) -> Response:
        """Serve one bundled asset by its name in the table."""
        entry = table.get(request.path_params["name"])
        if entry is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        folder, name, media_type = entry
        return FileResponse(
            _asset_path(folder, name),
            media_type=media_type,
            headers={"Cache-Control": _ASSET_CACHE, "X-Content-Type-Options": "nosniff"},
        )

    return asset


def _page(body: str, csp: str) -> HTMLResponse:
    return HTMLResponse(
        body,
        headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


def swagger_html(title: str) -> str:
    """Return the Swagger UI page; every URL is relative, so it works under any prefix."""
    # Relative to /docs (or /users/docs behind the gateway): docs/assets/... and openapi.json.
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} - Swagger UI</title>
<link rel="icon" href="docs/assets/favicon.png">
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="openapi.json"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/swagger-init.js"></script>
</body>
</html>
"""


def redoc_html(title: str) -> str:
    """Return the ReDoc page: the standalone bundle renders the <redoc> element by itself."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} - ReDoc</title>
<link rel="icon" href="docs/assets/favicon.png">
</head>
<body>
<redoc spec-url="openapi.json"></redoc>
<script src="redoc/assets/redoc.standalone.js"></script>
</body>
</html>
"""


def install_pages(app: FastAPI, *, title: str) -> None:
    """Add /docs, /redoc (offline), the front page at / and the event catalogue at /events."""
    swagger = swagger_html(title)
    redoc = redoc_html(title)

    async def docs(request: Request) -> Response:
        """Swagger UI, with its assets served by this process."""
        return _page(swagger, SWAGGER_CSP)

    async def redoc_page(request: Request) -> Response:
        """ReDoc, with its bundle served by this process."""
        return _page(redoc, REDOC_CSP)

    async def home(request: Request) -> Response:
        """The front page: links to every API's docs, the inbox, the catalogue; health."""
        return _page(_front_page(), PAGES_CSP)

    async def events(request: Request) -> Response:
        """The event catalogue, rendered from the contract's AsyncAPI and JSON Schemas."""
        return _page(render_catalogue_html(), PAGES_CSP)

    docs_assets = _asset_route(_DOCS_ASSETS)
    page_assets = _asset_route(_PAGE_ASSETS)
    app.add_route("/docs", docs, methods=["GET"], include_in_schema=False)
    app.add_route("/docs/assets/{name}", docs_assets, methods=["GET"], include_in_schema=False)
    app.add_route("/redoc", redoc_page, methods=["GET"], include_in_schema=False)
    app.add_route("/redoc/assets/{name}", docs_assets, methods=["GET"], include_in_schema=False)
    app.add_route("/", home, methods=["GET"], include_in_schema=False)
    app.add_route("/events", events, methods=["GET"], include_in_schema=False)
    app.add_route("/assets/{name}", page_assets, methods=["GET"], include_in_schema=False)


@cache
def _front_page() -> str:
    return (_STATIC / "home.html").read_text("utf-8")
