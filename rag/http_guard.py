"""The HTTP edge of `rag serve`: what a request may cost before any endpoint sees it.

- Body size: a body over its route's limit is a 413, refused from its Content-Length before a byte
  is read, or as soon as a chunked body passes the limit (bodies are never read whole first).
- Read timeouts: headers must arrive within `header_timeout` of the connection opening (or of the
  previous response), and a body within `body_timeout` plus the time to send it at 64 KiB/s; else
  408 (body) or the connection is closed (headers). A client that never sends holds nothing.
- JSON bodies that are not UTF-8 or nest too deep are a 422 naming the body, as FastAPI answers
  other malformed JSON, rather than its generic 400.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("rag.api")
MAX_BODY_BYTES = 64 * 1024  # a search request is a question of at most 2,000 characters
MAX_JSON_DEPTH = 32
MIN_BODY_RATE = 64 * 1024  # bytes/s a slow client must still manage once the first `body_timeout` is spent


class Limits:
    """Per-route body limits: `uploads` (path prefix -> bytes) for document uploads, else MAX_BODY_BYTES."""

    def __init__(self, app: ASGIApp, body_timeout: float = 10.0, uploads: dict[str, int] | None = None):
        self.app = app
        self.body_timeout = body_timeout
        self.uploads = uploads or {}

    def limit_for(self, path: str) -> int:
        return next((n for prefix, n in self.uploads.items() if path.startswith(prefix)), MAX_BODY_BYTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        declared = headers.get(b"content-length")
        expected = int(declared) if declared is not None and declared.isdigit() else limit
        if expected > limit:
            await _reply(send, 413, f"body: is {expected} bytes; the limit for {scope['path']} is {limit} bytes")
            return
        deadline = time.monotonic() + self.body_timeout + expected / MIN_BODY_RATE
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                await _reply(send, 408, f"body: did not arrive in time ({size} bytes in); send the whole request at once")
                return
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await _reply(send, 413, f"body: is over the limit for {scope['path']} of {limit} bytes")
                return
            chunks.append(body)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and b"json" in headers.get(b"content-type", b""):
            problem = json_problem(body)
            if problem:
                await _reply(send, 422, f"body: {problem}", kind="json_invalid")
                return
        await self.app(scope, _replay(body, receive), send)


class OneLineErrors:
    """A bug in an endpoint is a 500 with an ErrorResponse body and one log line, not a traceback per request."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            log.error("%s %s failed: %s: %s", scope.get("method"), scope.get("path"), type(exc).__name__, exc)
            if scope["type"] == "http" and not started:
                await _reply(send, 500, "internal error; the server log has one line about it", kind="internal")


def json_problem(body: bytes) -> str | None:
    """Why a JSON body cannot be read, for the two cases FastAPI would answer with a bare 400."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"is not valid UTF-8 (byte {exc.start}); send the JSON encoded as UTF-8"
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:  # bodies are at most MAX_BODY_BYTES: a character loop is cheap
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    if deepest > MAX_JSON_DEPTH:
        return f"JSON is nested {deepest} levels deep; the limit is {MAX_JSON_DEPTH}"
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """The buffered body once, then the real channel (which reports the client's disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reply(send: Send, status: int, detail: str, kind: str = "") -> None:
    """The same shape as every other error answer: a one-line `detail` and the structured `errors`."""
    errors = (
        [{"loc": ["body"], "msg": detail.removeprefix("body: "), "type": kind or f"http_{status}"}] if detail.startswith("body: ") else []
    )
    payload = json.dumps({"detail": detail, "errors": errors}, ensure_ascii=False).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, but a connection waiting for request headers is closed after
    `HEADER_TIMEOUT` seconds (uvicorn has no such timeout: a client that sends half a request line
    would hold its connection for ever)."""

    HEADER_TIMEOUT = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            self._arm()  # part of a request line or headers so far: the clock keeps running
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.HEADER_TIMEOUT, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()
