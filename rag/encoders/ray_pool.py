"""Passage embedding spread over a Ray cluster with Ray Data: `rag index --ray [ADDRESS]`.

Why: one machine embeds a few hundred passages per second at best (docs/performance.md); a
cluster multiplies that by its cores. Nothing else about a build changes: `RayEncoder` is an
Encoder whose `encode_passages` sends the texts, with their positions, through `map_batches`
over an actor pool; each actor loads the same encoder as the local path once (same engine and
settings, its threads set to its CPUs so actors do not oversubscribe a node), and the driver
puts the vectors back in the original order. The build's vector cache, incremental logic and
index files are untouched, so a Ray build and a local one give the same vectors (the int8 ONNX
engine embeds each text alone, so its vector depends on the text only) and the same index.

Each node needs the project installed (same package) and finds or derives the model files
itself, as the local path does, under RAG_CACHE_DIR (README, "Scaling out").
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import Settings
from rag.encoders import PRIMARY, SECOND, Encoder
from rag.encoders.batching import cores, progress_bar
from rag.errors import RagError

#: A local cluster's object store: texts and vectors stream through it a batch at a time.
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024
#: Seconds to wait for a cluster's address to accept a connection before giving up.
CONNECT_TIMEOUT_S = 5.0
#: Tries at starting a local cluster (see _start_local).
LOCAL_START_ATTEMPTS = 3


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of `ray://host:port` or `host:port`; None for "auto" (Ray finds the cluster)."""
    if address == "auto":
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RagError(f"--ray {address!r}: give host:port (the head's GCS port, 6379 by default), ray://host:10001, or auto")
    return host.strip("[]"), int(port)


def check_reachable(address: str) -> None:
    """Fail in one line, within seconds, when nothing listens at `address` (Ray itself retries for minutes)."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise RagError(
            f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one with `ray start --head` "
            "and pass its address, or run `rag index --ray` without an address for a local one"
        ) from None


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[dict[str, float]]:
    """Connected to the cluster at `address`, or to a local one started for the block (one CPU per core,
    no dashboard, a small object store, logs in a temporary folder removed after). Yields the cluster's resources."""
    import ray

    temp_dir = None
    try:
        if address:
            check_reachable(address)
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            temp_dir = _start_local(ray)
    except (ConnectionError, TimeoutError, ValueError, RuntimeError) as exc:  # e.g. a missing auth token
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise RagError(f"cannot connect to {where}: {_one_line(exc)}") from None
    try:
        _quiet_ray_data()
        yield dict(ray.cluster_resources())
    finally:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _start_local(ray: Any) -> str:
    """Start a local cluster in a fresh temporary folder; returns the folder.

    Ray gives its raylet a fixed 30 s to register and then raises a plain Exception ("timed out during
    startup"); a CI run saw that once on a machine where it otherwise starts in seconds, so a failed
    start is shut down and tried again, up to LOCAL_START_ATTEMPTS times, before it is one error.
    """
    # Ray 2.60 enables token auth on a new local cluster and says so; it stays on, unannounced.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    for attempt in range(1, LOCAL_START_ATTEMPTS + 1):
        temp_dir = tempfile.mkdtemp(prefix="rag-ray-")
        try:
            ray.init(
                num_cpus=cores(), include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                _temp_dir=temp_dir, log_to_driver=False, logging_level=logging.WARNING,
            )  # fmt: skip
            return temp_dir
        except Exception as exc:  # Ray raises bare Exceptions for a node that did not start
            with contextlib.suppress(Exception):
                ray.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)
            if attempt == LOCAL_START_ATTEMPTS:
                raise RuntimeError(f"it did not start in {attempt} tries ({_one_line(exc)})") from None
    raise AssertionError("unreachable")


def _quiet_ray_data() -> None:
    """Ray Data's per-operator bars and log lines would bury the build's own passages/s bar."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # "dataset execution finished" lines
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"


def _one_line(exc: BaseException) -> str:
    """The innermost cause of a (possibly remote) error, on one line: Ray wraps it in tracebacks."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    cause = getattr(exc, "cause", None)  # RayTaskError carries the worker's exception here
    if isinstance(cause, BaseException) and cause is not exc:
        return _one_line(cause)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"


def load_role(settings: Settings, role: str, threads: int) -> Encoder:
    """The encoder of `role` as the local path loads it, with `threads` compute threads."""
    if role == PRIMARY:
        from rag.encoders import load_encoder

        return load_encoder(replace(settings, embed_threads=threads), progress=False)
    if role == SECOND:
        from rag.encoders.use import USEEncoder

        return USEEncoder(threads=threads, cache_dir=settings.cache_dir)
    raise RagError(f"unknown encoder role {role!r}")


class EmbedActor:
    """One Ray Data actor: loads its encoder once, then embeds batches of {"pos", "text"} rows."""

    def __init__(self, settings: Settings, role: str, threads: int, tokens: bool = False):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a worker never reaches for a model hub
        self.encoder = load_role(settings, role, threads)
        self.tokens = tokens  # also each passage's token rows (rag/late.py), from the same run

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cpu = time.process_time()
        texts = [str(t) for t in batch["text"]]
        out: dict[str, np.ndarray] = {}
        if self.tokens:
            vectors, rows = self.encoder.passage_tokens(texts)  # type: ignore[attr-defined]
            out["tokens"] = np.empty(len(rows), dtype=object)  # ragged: one (tokens, dim) array a row
            for i, r in enumerate(rows):
                out["tokens"][i] = r
        else:
            vectors = self.encoder.encode_passages(texts)
        rows_n = len(batch["pos"])
        spent = np.full(rows_n, (time.process_time() - cpu) / max(1, rows_n))  # CPU-seconds per row, for RayEncoder.timings
        return out | {"pos": np.asarray(batch["pos"], dtype=np.int64), "vector": np.asarray(vectors, dtype=np.float32), "cpu_s": spent}


class RayEncoder:
    """An Encoder whose passages are embedded by a pool of `workers` actors of `worker_cpus` CPUs each.

    Queries (and `dim`) go to `local`, the same encoder loaded in this process; a build never asks.
    """

    def __init__(self, role: str, local: Encoder, settings: Settings, workers: int, worker_cpus: int = 1, batch_size: int = 64):
        self.role, self.local, self.settings = role, local, settings
        self.name, self.dim = local.name, local.dim
        self.workers, self.worker_cpus, self.batch_size = max(1, workers), max(1, worker_cpus), max(1, batch_size)
        #: Of the last call: seconds until the first batch came back (actors starting, models loading), in all,
        #: and the CPU-seconds the actors spent embedding (model loading not included).
        self.timings: dict[str, float] = {}

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.local.encode_queries(texts)

    def _prepare(self) -> None:
        """Derive the int8 copy here first (once, ~20-35 s, with its message), so actors on this
        machine find it ready instead of waiting on each other's lock; other nodes derive their own."""
        from rag.encoders.sentence import SentenceEncoder

        if isinstance(self.local, SentenceEncoder) and self.local.passage_engine == "onnx-int8":
            from rag.encoders.onnx_int8 import ensure_int8

            ensure_int8(Path(self.local.path), self.settings.cache_dir)

    @property
    def has_tokens(self) -> bool:
        return bool(getattr(self.local, "has_tokens", False))

    @property
    def projection(self) -> Any:
        return self.local.projection  # type: ignore[attr-defined]

    def queries_with_tokens(self, texts: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        return self.local.queries_with_tokens(texts)  # type: ignore[attr-defined]

    def token_pieces(self, texts: list[str], query: bool = True) -> list[list[int]]:
        return self.local.token_pieces(texts, query)  # type: ignore[attr-defined]  # tokenizing only: no actor needed

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """`texts` through the actor pool, longest first (batches of similar lengths), reassembled by position."""
        return self._pool(texts, progress, tokens=False)[0]

    def passage_tokens(self, texts: list[str], projection: Any = None, progress: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
        """`encode_passages`, and each passage's token rows from the actors' same runs (with the shipped projection)."""
        if projection is not None and projection.version != self.projection.version:
            raise RagError(f"Ray actors project token rows with {self.projection.version}, not {projection.version}")
        return self._pool(texts, progress, tokens=True)

    def _pool(self, texts: list[str], progress: bool, tokens: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        import ray.data

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        kept: list[np.ndarray] = [np.zeros(0)] * len(texts)
        if not texts:
            return out, kept
        self._prepare()
        self.timings = {"worker_cpu_s": 0.0}
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        items = [{"pos": i, "text": texts[i]} for i in order]
        blocks = max(self.workers, math.ceil(len(items) / self.batch_size))
        dataset = ray.data.from_items(items, override_num_blocks=min(blocks, 1000)).map_batches(
            EmbedActor,
            fn_constructor_kwargs={"settings": self.settings, "role": self.role, "threads": self.worker_cpus, "tokens": tokens},
            batch_size=self.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=self.worker_cpus,
        )
        done = np.zeros(len(texts), dtype=bool)
        started = time.perf_counter()
        try:
            with progress_bar(len(texts), progress, f"{self.role} via Ray ({self.workers} workers)") as bar:
                for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    self.timings.setdefault("first_batch_s", time.perf_counter() - started)
                    out[batch["pos"]] = batch["vector"]
                    for pos, rows in zip(batch["pos"].tolist(), batch["tokens"] if tokens else [], strict=False):
                        kept[pos] = np.asarray(rows)
                    self.timings["worker_cpu_s"] += float(batch["cpu_s"].sum())
                    done[batch["pos"]] = True
                    bar.update(len(batch["pos"]))
        except RagError:
            raise
        except Exception as exc:  # a worker's failure arrives wrapped in Ray's exception types
            raise RagError(f"embedding with Ray failed: {_one_line(exc)}") from None
        self.timings["total_s"] = time.perf_counter() - started
        if not done.all():
            raise RagError(f"embedding with Ray returned {int(done.sum())} of {len(texts)} vectors")
        return out, kept


def ray_encoders(settings: Settings, local: Mapping[str, Encoder], resources: Mapping[str, float]) -> dict[str, RayEncoder]:
    """Every role of `local` embedded through Ray, with as many workers as the cluster has CPUs for
    (RAG_RAY_WORKERS overrides; each worker takes RAG_RAY_WORKER_CPUS)."""
    cpus = max(1, settings.ray_worker_cpus)
    workers = settings.ray_workers or max(1, int(resources.get("CPU", 1) // cpus))
    return {role: RayEncoder(role, enc, settings, workers, cpus, settings.ray_batch_size) for role, enc in local.items()}
