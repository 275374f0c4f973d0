"""HTTP API (FastAPI). Endpoints are plain `def`s: FastAPI runs them in its thread pool, so one
slow embedding never blocks the event loop."""

from __future__ import annotations

import os
import socket
import time
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag import __version__
from rag.admin import admin_router
from rag.admission import Admission
from rag.config import Settings
from rag.encoders import PRIMARY
from rag.errors import RagError
from rag.http_guard import HeaderTimeoutProtocol, Limits, OneLineErrors
from rag.percent import undecodable_param, undecodable_path
from rag.reload import Reloader
from rag.retrieve import Retriever
from rag.schema import (
    MAX_QUESTION_CHARS,
    MAX_TOP_K,
    DocumentOut,
    ErrorResponse,
    Page,
    SearchRequest,
    SearchResponse,
    check_question_tokens,
    format_validation_error,
    to_response,
)
from rag.web import page_router

# What any endpoint can answer besides its own; every error body is an ErrorResponse (but 503's).
EVERYWHERE: dict[int | str, dict[str, Any]] = {
    408: {"model": ErrorResponse, "description": "The body did not arrive in time (RAG_BODY_TIMEOUT_S)."},
    413: {"model": ErrorResponse, "description": "The body is over the size limit (64 KiB; uploads RAG_MAX_UPLOAD_MB)."},
    422: {"model": ErrorResponse, "description": "A field is invalid, or the body is not readable JSON; `detail` names it."},
    500: {"model": ErrorResponse, "description": "A bug: the server log has one line about it."},
    503: {"description": "More connections than RAG_MAX_CONNECTIONS; plain text, try again shortly.", "content": {"text/plain": {}}},
}


def create_app(retriever: Retriever, reloader: Reloader | None = None) -> FastAPI:
    """The API over `retriever`; `reloader` (started by the caller) swaps in new index versions."""
    settings = retriever.settings
    settings.check_serving()
    app = FastAPI(
        title="rag: bilingual retrieval with exact citations",
        version=__version__,
        description="Ask in Chinese or English; get the corpus passages that answer, each with an exact citation.",
        responses=EVERYWHERE,
    )
    app.state.retriever = retriever
    admission = Admission(os.cpu_count() or 1, fair=settings.fair_queue)
    app.include_router(admin_router(reloader or Reloader(retriever)))
    app.include_router(page_router())
    app.add_middleware(OneLineErrors)
    app.add_middleware(
        Limits,
        body_timeout=settings.body_timeout_s,
        uploads={"/admin/documents/": int(settings.max_upload_mb * 1024 * 1024)},
    )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"detail": detail, "errors": []}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors: list[dict[str, Any]] = [dict(e) for e in exc.errors()]
        for err in errors:
            if err.get("type") == "json_invalid":
                err["loc"], err["msg"] = ("body",), 'malformed JSON; send an object like {"question": "...", "top_k": 5}'
        return _error(errors)

    @app.get("/health")
    def health() -> dict[str, Any]:
        index = app.state.retriever.index
        confidence = app.state.retriever.model.version
        english = getattr(app.state.retriever.encoders[PRIMARY], "adapter", "")
        return {
            "status": "ok",
            "passages": len(index.passages),
            "model": index.manifest["model"]["name"],
            "store": index.store.name,
            "confidence": confidence,
            "query_adapter": english or "off",
        }

    @app.post("/search", response_model=SearchResponse)
    def search_post(body: SearchRequest, request: Request) -> SearchResponse | JSONResponse:
        return _answer(app.state.retriever, admission, _client(request), body, "question")

    @app.get("/search", response_model=SearchResponse)
    def search_get(
        request: Request,
        q: Annotated[str, Query(description="The question.", max_length=MAX_QUESTION_CHARS)],
        top_k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = 5,
    ) -> SearchResponse | JSONResponse:
        bad = undecodable_param(request.scope.get("query_string", b""), b"q")
        if bad is not None:  # Starlette would have read it as U+FFFD and searched for that
            return _error([{"loc": ("q",), "msg": bad, "type": "unicode_invalid"}])
        try:
            body = SearchRequest(question=q, top_k=top_k)
        except ValidationError as exc:
            errors = [dict(e) | {"loc": ("q",) if e["loc"][:1] == ("question",) else e["loc"]} for e in exc.errors()]
            return _error(errors)
        return _answer(app.state.retriever, admission, _client(request), body, "q")

    @app.get("/documents/{doc_id:path}", response_model=DocumentOut, responses={404: {"model": ErrorResponse}})
    def document(
        request: Request,
        doc_id: str,
        start: Annotated[int | None, Query(ge=0, description="Offset of the first character to return.")] = None,
        end: Annotated[int | None, Query(ge=0, description="Offset after the last character to return.")] = None,
    ) -> DocumentOut | JSONResponse:
        """A document's canonical text (or a slice of it), to check a citation: text[start:end] is the passage."""
        bad = undecodable_path(request.scope.get("raw_path", b""))
        if bad is not None:  # read as U+FFFD, it could name another document
            return _error([{"loc": ("path", "doc_id"), "msg": bad, "type": "unicode_invalid"}])
        doc = app.state.retriever.index.documents.get(doc_id)
        if doc is None:
            raise StarletteHTTPException(404, f"no document {doc_id[:200]!r} in the index; ids are paths relative to the corpus folder")
        length = len(doc.text)
        lo, hi = 0 if start is None else start, length if end is None else end
        if lo > length:
            return _error([{"loc": ("query", "start"), "msg": f"is past the end of the document ({length} characters)"}])
        if hi > length or hi < lo:
            return _error([{"loc": ("query", "end"), "msg": f"must be between start ({lo}) and the document's length ({length})"}])
        return DocumentOut(
            id=doc.id,
            format=doc.format,
            title=doc.title or app.state.retriever.index.titles.get(doc.id),
            sha256=doc.sha256,
            length=length,
            start=lo,
            end=hi,
            text=doc.text[lo:hi],
            pages=[Page(number=p.number, start=p.start, end=p.end) for p in doc.pages],
        )

    return app


def server(app: FastAPI, settings: Settings, host: str, port: int) -> uvicorn.Server:
    """uvicorn with the limits of rag/http_guard.py: header timeout, connection cap, short keep-alive."""
    protocol = type("Protocol", (HeaderTimeoutProtocol,), {"HEADER_TIMEOUT": settings.header_timeout_s})
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", http=protocol, limit_concurrency=settings.max_connections, timeout_keep_alive=5
    )
    return uvicorn.Server(config)


def check_port(host: str, port: int) -> None:
    """Bind and release the port now, so that a taken port is a one-line error before anything loads.

    uvicorn then binds it itself: a socket handed to it (`sockets=`) answered every request ~45 ms
    late (Nagle's algorithm against delayed ACKs on the accepted connections), so it is not kept.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror as exc:  # not an address of this machine's resolver: the host is wrong, not the port
            raise RagError(f"cannot listen on {host}:{port} ({exc.strerror}); pass an address of this machine as --host") from None
        except OSError as exc:
            raise RagError(f"cannot listen on {host}:{port} ({exc.strerror}); stop what uses it or pick another --port") from None


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "?"


def _answer(retriever: Retriever, admission: Admission, client: str, request: SearchRequest, field: str) -> SearchResponse | JSONResponse:
    """One search, once its question fits the model and its turn has come (rag/admission.py)."""
    tokens = retriever.question_tokens(request.question)
    try:
        check_question_tokens(tokens)
    except ValueError as exc:
        return _error([{"loc": (field,), "msg": str(exc), "type": "too_long"}])
    with admission.slot(client, tokens):
        started = time.perf_counter()  # took_ms is the search itself, not the wait for a slot
        answer = retriever.answer(request.question, request.top_k)
    return to_response(request.question, answer, (time.perf_counter() - started) * 1000)


def _error(errors: list[dict[str, Any]]) -> JSONResponse:
    """422 with a one-line message naming the field, plus the structured errors."""
    safe = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")).removeprefix("Value error, "), "type": str(e.get("type", ""))}
        for e in errors
    ]
    return JSONResponse(status_code=422, content={"detail": format_validation_error(errors), "errors": safe})
