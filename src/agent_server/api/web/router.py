"""`GET /` serves the chat page; `/static/` its script, styles and icon.

The page is plain files shipped in the package (no build step, no CDN). It talks to
the same `/api` as any client, so it holds no logic of the server's own. The API's
Content-Security-Policy (`default-src 'none'`) would block the page's own script and
styles, so the page's responses carry their own policy: scripts, styles and
connections only from this origin, never inline, and no framing.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/static"

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
"""No `unsafe-inline` anywhere: the page's script and styles are files, and model text
is inserted as text nodes, so an injected tag could neither run nor style."""

PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    # Always revalidate the page (cheap: ETag), so a new version's HTML and the
    # assets it names never go out of step.
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def chat_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)


class _PageStaticFiles(StaticFiles):
    """Starlette's static files (ETag, ranges, safe path joining), with the page's
    policy on each asset too, so an asset opened on its own is as locked down."""

    def file_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)
        response.headers.update(PAGE_HEADERS)
        return response


def install(app: FastAPI) -> None:
    """Add the page and its assets to `app` (a mount cannot travel in a router)."""
    app.include_router(router)
    app.mount(STATIC_PATH, _PageStaticFiles(directory=STATIC_DIR), name="static")
