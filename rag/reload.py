"""Keep a running server on the live index without a restart.

`Reloader` serves whatever version index/CURRENT names: a background thread reads that 30-byte
pointer every `reload_poll_ms` and loads a new version when it changes (built by `rag index` in
another process, or by a reindex job here). `Reindexer` runs POST /admin/reindex builds one at a
time in a background thread. Searches never wait for either: a new index is loaded aside and
swapped in with one reference assignment (Retriever.swap), so a search runs on the old index or
the new one, never on a half-loaded one, and a version that fails to load is logged and skipped
while the old one keeps serving.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rag.errors import RagError
from rag.index import BuildReport, build_index, current_version, load_index
from rag.retrieve import Retriever

log = logging.getLogger("rag.reload")
KEEP_JOBS = 100


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Reloader:
    """Swaps the version CURRENT names into the retriever; the only place a server changes index."""

    def __init__(self, retriever: Retriever, poll_seconds: float = 1.0):
        self.retriever = retriever
        self.poll_seconds = poll_seconds
        self.loaded_at = _now()
        self.last_error: str | None = None
        self._failed: str | None = None  # a version that did not load is not retried: a new build makes a new one
        self._lock = threading.Lock()  # one load at a time, so an older version can never replace a newer one
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> bool:
        """Serve the version CURRENT names if it is not served yet; True when it swapped one in."""
        settings = self.retriever.settings
        with self._lock:
            try:
                path = current_version(settings.index_dir)
            except RagError as exc:  # a damaged CURRENT: said once, shown in /admin/index, until it changes
                if self.last_error != str(exc):
                    self.last_error = str(exc)
                    log.error("%s; still serving %s", exc, self.retriever.index.path.name)
                return False
            if path is None or path == self.retriever.index.path or path.name == self._failed:
                if path == self.retriever.index.path:
                    self.last_error = None
                return False
            try:
                index = load_index(settings, path)
            except Exception as exc:  # anything at all: the old index must keep serving
                self._failed, self.last_error = path.name, f"{path.name}: {exc}"
                log.error("could not load index %s; still serving %s: %s", path.name, self.retriever.index.path.name, exc)
                return False
            self.retriever.swap(index)
            self._failed, self.last_error, self.loaded_at = None, None, _now()
            log.info("now serving index %s (%d passages)", path.name, len(index.passages))
            return True

    def start(self) -> None:
        """Poll CURRENT in a daemon thread (not at all when poll_seconds <= 0)."""
        if self.poll_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="rag-index-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.sync()
            except Exception:  # the watcher must outlive any surprise
                log.exception("index watcher")


@dataclass
class Job:
    """One POST /admin/reindex: its progress while it runs, its result when it ends."""

    id: str
    full: bool
    status: str = "queued"  # queued | running | done | failed
    stage: str = "queued"
    submitted_at: str = field(default_factory=_now)
    started_at: str | None = None
    finished_at: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Reindexer:
    """Runs reindex jobs one at a time in a background thread, each followed by a swap."""

    def __init__(self, reloader: Reloader):
        self.reloader = reloader
        self._jobs: dict[str, Job] = {}
        self._queued: Job | None = None
        self._queue: queue.Queue[Job] = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def submit(self, full: bool = False) -> Job:
        """A new job, or the one still waiting to start: it reads the corpus when it starts, so it covers this request too."""
        with self._lock:
            if self._queued is not None:
                self._queued.full |= full
                return self._queued
            job = Job(uuid.uuid4().hex[:12], full)
            self._jobs[job.id] = job
            for old in list(self._jobs)[:-KEEP_JOBS]:
                del self._jobs[old]
            self._queued = job
            self._queue.put(job)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="rag-reindex", daemon=True)
                self._worker.start()
            return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            with self._lock:
                self._queued = None
                job.status, job.started_at = "running", _now()
            self._run(job)

    def _run(self, job: Job) -> None:
        retriever = self.reloader.retriever

        def stage(text: str) -> None:
            job.stage = text

        try:
            report = build_index(retriever.settings, retriever.encoders, progress=False, full=job.full, stage=stage)
            stage("loading the new version")
            self.reloader.sync()
            if retriever.index.path != report.path:
                raise RagError(f"built {report.path.name} but could not load it ({self.reloader.last_error}); still serving the old index")
            job.result = _result(report) | {"serving": retriever.index.path.name}
            job.status = "done"
            stage("done")
        except Exception as exc:
            job.error = str(exc) if isinstance(exc, RagError) else f"{type(exc).__name__}: {exc}"
            job.status = "failed"
            log.error("reindex job %s failed: %s", job.id, job.error)
        finally:
            job.finished_at = _now()


def _result(report: BuildReport) -> dict[str, Any]:
    c = report.changes
    return {
        "version": report.path.name,
        "summary": report.summary(),
        "added": c.added,
        "changed": c.changed,
        "removed": c.removed,
        "unchanged": len(c.unchanged),
        "embedded": report.embedded,
        "documents": report.documents,
        "passages": report.passages,
        "skipped": dict(report.skipped),
        "seconds": round(report.seconds, 3),
    }
