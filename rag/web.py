"""The search page for people who prefer a browser: plain HTML, CSS and JS in rag/static/, no build
step and no CDN (the machines it runs on have no network). It calls GET /search and GET /documents."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, Response

STATIC = Path(__file__).resolve().parent / "static"
TYPES = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}


@cache
def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def page_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(_read("index.html"))

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in TYPES:
            raise HTTPException(404, f"no static file {name[:80]!r}")
        return Response(_read(name), media_type=TYPES[name])

    return router
