"""Admin endpoints of `rag serve`: reindex in the background, follow the job, see the live version.

Access: with RAG_ADMIN_TOKEN set, every request needs `Authorization: Bearer <token>` (401
otherwise). Without a token the endpoints are off (403), unless RAG_ADMIN_ALLOW_LOCALHOST is on,
which lets requests from the loopback address in without a token. Behind a reverse proxy on the
same host every request looks local, so use a token there.

Localhost mode trusts the local user, not the pages their browser opens: a request must name the
server itself as its Host (a DNS-rebinding page names its own host), must not carry an Origin or
a `Sec-Fetch-Site: cross-site` from another site, and a POST must send JSON or no body at all (a
cross-site form or `text/plain` fetch cannot send `application/json` without a CORS preflight,
which this server never grants).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from rag.config import Settings
from rag.ingest import store
from rag.percent import undecodable_path
from rag.reload import Job, Reindexer, Reloader
from rag.schema import ErrorResponse

LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})


def guard(settings: Settings) -> Callable[[Request], None]:
    """The access rule above, as a FastAPI dependency."""

    def check(request: Request) -> None:
        if settings.admin_token:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            offered = given.strip().encode("latin-1", "replace")  # headers arrive decoded as latin-1
            if scheme.lower() != "bearer" or not hmac.compare_digest(offered, settings.admin_token.encode("ascii")):
                raise HTTPException(
                    401, "admin endpoints need the header `Authorization: Bearer <RAG_ADMIN_TOKEN>`", headers={"WWW-Authenticate": "Bearer"}
                )
            return
        if settings.admin_allow_localhost and request.client is not None and request.client.host in LOOPBACK:
            cross_site(request)
            return
        raise HTTPException(403, "admin endpoints are off: set RAG_ADMIN_TOKEN (or RAG_ADMIN_ALLOW_LOCALHOST=1 to allow 127.0.0.1)")

    return check


LOCAL_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})


def cross_site(request: Request) -> None:
    """403 unless the request is the server's own (see the module docstring); 415 for a non-JSON POST body."""
    host = request.headers.get("host", "")
    name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    own_port = str(request.url.port or "")
    if name.lower() not in LOCAL_NAMES or (port and own_port and port != own_port):
        raise HTTPException(403, f"admin requests must be addressed to this server (Host {host!r} is not 127.0.0.1 or localhost)")
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() not in {f"http://{n}:{port or own_port}" for n in LOCAL_NAMES}:
        raise HTTPException(403, f"admin requests from other sites are refused (Origin {origin!r})")
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise HTTPException(403, "admin requests from other sites are refused (Sec-Fetch-Site)")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method == "POST" and kind and kind != "application/json":
        raise HTTPException(415, f"admin POST requests take application/json or no body, not {kind!r}")


def admin_router(reloader: Reloader) -> APIRouter:
    """/admin/reindex (POST: start a job), /admin/reindex/{id} (its progress), /admin/index (the live version)."""
    jobs = Reindexer(reloader)
    responses: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorResponse, "description": "A token is set and the request did not bring it."},
        403: {"model": ErrorResponse, "description": "Admin is off, or a localhost-mode request came from another site."},
        415: {"model": ErrorResponse, "description": "A localhost-mode POST whose body is not JSON."},
        422: {"model": ErrorResponse, "description": "A query parameter is invalid; `detail` names it."},
    }
    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(guard(reloader.retriever.settings))], responses=responses)

    @router.post("/reindex", status_code=202)
    def reindex(response: Response, full: Annotated[bool, Query(description="embed every passage again")] = False) -> dict[str, Any]:
        """Bring the index up to date with the corpus in the background, then serve it; returns the job."""
        job = jobs.submit(full)
        response.headers["Location"] = f"/admin/reindex/{job.id}"
        return job.to_json()

    @router.get("/reindex/{job_id}", responses={404: {"model": ErrorResponse, "description": "No such job in this server."}})
    def reindex_job(job_id: str) -> dict[str, Any]:
        """A job's status (queued, running, done, failed), its current stage, and its result or error."""
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no reindex job {job_id!r} in this server (jobs are kept in memory until it restarts)")
        return job.to_json()

    corpus = reloader.retriever.settings.corpus_dir
    doc_errors: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorResponse, "description": "No such document (DELETE)."},
        409: {"model": ErrorResponse, "description": "The path names a folder or a link."},
        413: {"model": ErrorResponse, "description": "The file is over RAG_MAX_UPLOAD_MB."},
        415: {"model": ErrorResponse, "description": "Not a format the corpus reads."},
    }

    @router.put("/documents/{path:path}", status_code=202, responses=doc_errors)
    async def put_document(path: str, request: Request, response: Response) -> dict[str, Any]:
        """Add or replace corpus file `path` (raw body, or multipart field `file`), then reindex; returns the job."""
        _check_decodable(request)
        data = await _upload(request)
        try:
            replaced = store.put_document(corpus, path, data)
        except store.DocumentPathError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        return _queued(response, jobs.submit(False), {"document": path, "replaced": replaced, "bytes": len(data)})

    @router.delete("/documents/{path:path}", status_code=202, responses=doc_errors)
    def delete_document(path: str, request: Request, response: Response) -> dict[str, Any]:
        """Remove corpus file `path`, then reindex; returns the job."""
        _check_decodable(request)
        try:
            store.delete_document(corpus, path)
        except store.DocumentPathError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        return _queued(response, jobs.submit(False), {"document": path, "removed": True})

    @router.get("/index")
    def index_info() -> dict[str, Any]:
        """The version being served, and the last automatic reload error if the newest one did not load."""
        index = reloader.retriever.index
        manifest = index.manifest
        return {
            "version": index.path.name,
            "built_at": manifest.get("built_at"),
            "documents": manifest.get("documents"),
            "passages": len(index.passages),
            "store": index.store.name,
            "serving_since": reloader.loaded_at,
            "reload_poll_seconds": reloader.poll_seconds,
            "reload_error": reloader.last_error,
            "skipped": manifest.get("skipped", {}),
        }

    return router


async def _upload(request: Request) -> bytes:
    """The uploaded file's bytes: a multipart form's `file` field, or the raw body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422, "file: a multipart upload needs the file in a field named `file`")
        return await upload.read()
    return await request.body()


def _queued(response: Response, job: Job, extra: dict[str, Any]) -> dict[str, Any]:
    response.headers["Location"] = f"/admin/reindex/{job.id}"
    return job.to_json() | extra


def _check_decodable(request: Request) -> None:
    """A path Starlette had to read with U+FFFD names a file the client did not: refused, not written."""
    bad = undecodable_path(request.scope.get("raw_path", b""))
    if bad is not None:
        raise HTTPException(422, f"path: {bad}")
