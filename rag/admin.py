"""Admin endpoints of `rag serve`: reindex in the background, follow the job, see the live version.

Access: with RAG_ADMIN_TOKEN set, every request needs `Authorization: Bearer <token>` (401
otherwise). Without a token the endpoints are off (403), unless RAG_ADMIN_ALLOW_LOCALHOST is on,
which lets requests from the loopback address in without a token. Behind a reverse proxy on the
same host every request looks local, so use a token there.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from rag.config import Settings
from rag.reload import Reindexer, Reloader

LOOPBACK = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})


def guard(settings: Settings) -> Callable[[Request], None]:
    """The access rule above, as a FastAPI dependency."""

    def check(request: Request) -> None:
        if settings.admin_token:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), settings.admin_token.encode()):
                raise HTTPException(
                    401, "admin endpoints need the header `Authorization: Bearer <RAG_ADMIN_TOKEN>`", headers={"WWW-Authenticate": "Bearer"}
                )
            return
        if settings.admin_allow_localhost and request.client is not None and request.client.host in LOOPBACK:
            return
        raise HTTPException(403, "admin endpoints are off: set RAG_ADMIN_TOKEN (or RAG_ADMIN_ALLOW_LOCALHOST=1 to allow 127.0.0.1)")

    return check


def admin_router(reloader: Reloader) -> APIRouter:
    """/admin/reindex (POST: start a job), /admin/reindex/{id} (its progress), /admin/index (the live version)."""
    jobs = Reindexer(reloader)
    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(guard(reloader.retriever.settings))])

    @router.post("/reindex", status_code=202)
    def reindex(response: Response, full: Annotated[bool, Query(description="embed every passage again")] = False) -> dict[str, Any]:
        """Bring the index up to date with the corpus in the background, then serve it; returns the job."""
        job = jobs.submit(full)
        response.headers["Location"] = f"/admin/reindex/{job.id}"
        return job.to_json()

    @router.get("/reindex/{job_id}")
    def reindex_job(job_id: str) -> dict[str, Any]:
        """A job's status (queued, running, done, failed), its current stage, and its result or error."""
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no reindex job {job_id!r} in this server (jobs are kept in memory until it restarts)")
        return job.to_json()

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
            "serving_since": reloader.loaded_at,
            "reload_poll_seconds": reloader.poll_seconds,
            "reload_error": reloader.last_error,
        }

    return router
