"""HTTP API (FastAPI). Endpoints are plain `def`s: FastAPI runs them in its thread pool, so one
slow embedding never blocks the event loop."""

from __future__ import annotations

import os
import threading
import time
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError

from rag import __version__
from rag.admin import admin_router
from rag.reload import Reloader
from rag.retrieve import Retriever
from rag.schema import MAX_QUESTION_CHARS, MAX_TOP_K, SearchRequest, SearchResponse, format_validation_error, to_response
from rag.web import PAGE


def create_app(retriever: Retriever, reloader: Reloader | None = None) -> FastAPI:
    """The API over `retriever`; `reloader` (started by the caller) swaps in new index versions."""
    app = FastAPI(
        title="rag: bilingual retrieval with exact citations",
        version=__version__,
        description="Ask in Chinese or English; get the corpus passages that answer, each with an exact citation.",
    )
    app.state.retriever = retriever
    app.include_router(admin_router(reloader or Reloader(retriever)))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors: list[dict[str, Any]] = [dict(e) for e in exc.errors()]
        for err in errors:
            if err.get("type") == "json_invalid":
                err["loc"], err["msg"] = ("body",), 'malformed JSON; send an object like {"question": "...", "top_k": 5}'
        return _error(errors)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE

    @app.get("/health")
    def health() -> dict[str, Any]:
        index = app.state.retriever.index
        return {"status": "ok", "passages": len(index.passages), "model": index.manifest["model"]["name"]}

    @app.post("/search", response_model=SearchResponse)
    def search_post(request: SearchRequest) -> SearchResponse:
        return _answer(app.state.retriever, request)

    @app.get("/search", response_model=SearchResponse)
    def search_get(
        q: Annotated[str, Query(description="The question.", max_length=MAX_QUESTION_CHARS * 2)],
        top_k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = 5,
    ) -> SearchResponse | JSONResponse:
        try:
            request = SearchRequest(question=q, top_k=top_k)
        except ValidationError as exc:
            errors = [dict(e) | {"loc": ("q",) if e["loc"][:1] == ("question",) else e["loc"]} for e in exc.errors()]
            return _error(errors)
        return _answer(app.state.retriever, request)

    return app


# At most one search per core at a time: more only makes the encoders' threads fight over the two
# cores (4 clients: 44.6 -> 49.9 req/s; 16 clients: 31.2 -> 44.6 req/s; docs/performance.md).
_SEARCH_SLOTS = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))


def _answer(retriever: Retriever, request: SearchRequest) -> SearchResponse:
    with _SEARCH_SLOTS:
        started = time.perf_counter()  # took_ms is the search itself, not the wait for a slot
        answer = retriever.answer(request.question, request.top_k)
    return to_response(request.question, answer, (time.perf_counter() - started) * 1000)


def _error(errors: list[dict[str, Any]]) -> JSONResponse:
    """422 with a one-line message naming the field, plus the structured errors."""
    safe = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors]
    return JSONResponse(status_code=422, content={"detail": format_validation_error(errors), "errors": safe})
