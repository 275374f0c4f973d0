"""The Milvus store: each index version is a collection of its own, written aside, then published.

RAG_STORE=milvus, RAG_MILVUS_URI = a milvus-lite file (default `<index dir>/milvus.db`) or a server
(`http://host:19530`), RAG_MILVUS_TOKEN for a server that wants one. pymilvus's MilvusClient is the
one client.

Collections of version v... (RAG_MILVUS_ALIAS, default `rag_passages`, is the prefix):

    rag_passages_<version>          one row per passage, id = its row in passages.jsonl: the citation
                                    (document, title, section, start, end, lines, format, pages, text),
                                    `primary` (the primary encoder's vector) and `sparse` (BM25)
    rag_passages_<version>_<role>   one row per unit of another role (sentences of `second`): id = its
                                    row in embeddings-<role>.npy, `owner` = its passage, `vector`

Dense indexes mirror rag/dense.py, so results match the local store: FLAT (exact, IP) up to
dense.EXACT_MAX rows, IVF_FLAT with dense.ivf_params(n) above. The keyword side is sparse vectors
computed here from the version's bm25s index: a passage's vector is its column of bm25s's
token-major score matrix (each token's BM25 weight in it), a query's is {token id: count in the
query}, so their inner product is bm25s `get_scores` (tests/test_store.py checks this).

A build writes the collections under the new version's name (`build`); the manifest names them;
after CURRENT switches, `publish` points the alias `rag_passages` (and `rag_passages_<role>`) at
them for outside readers; `sweep` drops the collections of versions no longer kept. A loaded
version searches the collections its manifest names, never the alias, so its ids always agree with
its passages.jsonl. Incremental builds rewrite the collection aside rather than upsert in place:
every BM25 weight depends on corpus-wide statistics, so any change rewrites every sparse vector,
and an in-place edit would let the live version see rows its passages.jsonl does not have.

milvus-lite lets one process open a file (it takes a lock): a second process gets a RagError saying
to reindex through the running server (POST /admin/reindex) or use a Milvus server.

Entry points for scripts (bench/): `build(settings, version, vectors, owners, passages, bm25)` ->
manifest entry; `MilvusStore.open(settings, entry, bm25)` -> `.dense(role, vector, k)`,
`.keyword(tokens, k)`; `drop(settings, entry)`; `release(settings)` closes the client (and frees a
milvus-lite file for another process).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import scipy.sparse

from rag import dense
from rag.chunk import Passage
from rag.config import Settings
from rag.encoders import PRIMARY
from rag.errors import IndexInvalidError, RagError
from rag.fusion import Ranking, empty

# gRPC's C core logs keepalive chatter between pymilvus and milvus-lite's in-process server
# ("too_many_pings") on stderr; errors reach us as exceptions anyway. Set before grpc is imported.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

NAME = "milvus"
BATCH = 1000  # rows per insert call (a gRPC message stays far below its 64 MB limit)
TEXT_MAX = 65_535  # VARCHAR limits
NAME_MAX = 4_096
ID = ["id"]  # the one field a search returns (with none named, Milvus returns every field, vectors too)
_clients: dict[tuple[str, str], Any] = {}
_temporary: list[tuple[Settings, dict[str, Any]]] = []  # collections to drop at exit (drop_at_exit)
_lock = threading.Lock()


def milvus_uri(settings: Settings) -> str:
    """The configured URI; a milvus-lite file as an absolute path."""
    uri = settings.milvus_uri or str(settings.index_dir / "milvus.db")
    return uri if is_server(uri) else str(Path(uri).expanduser().resolve())


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://"))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """milvus-lite and pymilvus log a traceback for errors we turn into one line; hush them meanwhile."""
    loggers = [logging.getLogger(n) for n in ("milvus_lite", "pymilvus")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def client(settings: Settings) -> Any:
    """The process's MilvusClient for the configured URI (one per URI and token)."""
    from pymilvus import MilvusClient

    uri = milvus_uri(settings)
    key = (uri, settings.milvus_token)
    with _lock:
        if key in _clients:
            return _clients[key]
        if not is_server(uri):
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
            # milvus-lite serves gRPC in this process and logs a traceback for each call it lacks
            # (AllocTimestamp, asked by pymilvus while an index is created); pymilvus copes without it.
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
        try:
            with _quiet():
                made = MilvusClient(uri=uri, token=settings.milvus_token, timeout=10)
        except Exception as exc:
            raise RagError(_open_error(uri, exc)) from None
        if not _clients:
            # Close before the interpreter shuts thread pools down: milvus-lite's gRPC server would
            # otherwise log a traceback for each call that arrives after (threading's exit hooks run
            # newest first, before atexit's).
            threading._register_atexit(_release_all)  # type: ignore[attr-defined]
        _clients[key] = made
        return made


def drop_at_exit(settings: Settings, entry: Mapping[str, Any]) -> None:
    """Drop a temporary version's collections (an in-memory index of `rag eval --beir`) when the process ends."""
    with _lock:
        _temporary.append((settings, dict(entry)))


def _release_all() -> None:
    with _lock:
        temporary = list(_temporary)
        _temporary.clear()
    for settings, entry in temporary:
        with contextlib.suppress(Exception):
            drop(settings, entry)
    with _lock:
        made = list(_clients.items())
        _clients.clear()
    for (uri, _), one in made:
        with contextlib.suppress(Exception):
            one.close()
        if not is_server(uri):
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(uri)


def _open_error(uri: str, exc: Exception) -> str:
    if is_server(uri):
        return f"cannot reach Milvus at {uri} ({getattr(exc, 'message', exc)}); start it, or check RAG_MILVUS_URI and RAG_MILVUS_TOKEN"
    if _locked(Path(uri) / "LOCK"):
        return (
            f"the milvus-lite file {uri} is open in another process (a running `rag serve`?), and milvus-lite allows one: "
            "reindex through that server (POST /admin/reindex), ask it with `--server URL`, stop it first, "
            "or use a Milvus server (RAG_MILVUS_URI=http://host:19530)"
        )
    reason = getattr(exc, "message", exc)
    return f"cannot open the milvus-lite file {uri} ({reason}); remove it and run `rag index --full`, or check RAG_MILVUS_URI"


def _locked(path: Path) -> bool:
    """Whether another process holds milvus-lite's flock on `path`."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def release(settings: Settings) -> None:
    """Close this process's client; a milvus-lite file is then free for another process."""
    uri = milvus_uri(settings)
    with _lock:
        made = _clients.pop((uri, settings.milvus_token), None)
    if made is not None:
        with contextlib.suppress(Exception):
            made.close()
    if not is_server(uri):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


def collection_names(settings: Settings, version: str, roles: Sequence[str]) -> dict[str, str]:
    """The collection of each role of a version (`primary` holds the passages)."""
    base = f"{settings.milvus_alias}_{version}".replace("-", "_")
    return {role: base if role == PRIMARY else f"{base}_{role}" for role in roles}


def _index_params(milvus: Any, field: str, rows: int) -> tuple[Any, dict[str, Any]]:
    """Index of a dense field as rag/dense.py would build it, and its search parameters."""
    params = milvus.prepare_index_params()
    if rows <= dense.EXACT_MAX:
        params.add_index(field, index_type="FLAT", metric_type="IP")
        return params, {"type": "FLAT", "metric": "inner_product", "ntotal": rows, "search": {}}
    nlist, nprobe = dense.ivf_params(rows)
    params.add_index(field, index_type="IVF_FLAT", metric_type="IP", params={"nlist": nlist})
    kind = {"type": "IVF_FLAT", "metric": "inner_product", "ntotal": rows, "nlist": nlist, "nprobe": nprobe}
    return params, kind | {"search": {"nprobe": nprobe}}


def passage_sparse(bm25: bm25s.BM25, passages: int) -> scipy.sparse.csr_matrix:
    """Passage-major BM25 weights: row p = passage p's column of bm25s's token-major score matrix."""
    s = bm25.scores
    tokens = len(s["indptr"]) - 1
    by_token = scipy.sparse.csr_matrix((s["data"], s["indices"], s["indptr"]), shape=(tokens, passages))
    return by_token.T.tocsr()


def query_sparse(bm25: bm25s.BM25, tokens: Sequence[str]) -> dict[int, float]:
    """{token id: how often it occurs in the query}: the inner product with a passage row is its BM25 score."""
    vocab = bm25.vocab_dict
    return {int(vocab[t]): float(n) for t, n in Counter(tokens).items() if t in vocab}


def build(
    settings: Settings,
    version: str,
    vectors: Mapping[str, np.ndarray],
    owners: Mapping[str, Sequence[int] | np.ndarray],
    passages: Sequence[Passage],
    bm25: bm25s.BM25,
) -> dict[str, Any]:
    """Write the version's collections (not yet published); the manifest's entry for them."""
    from pymilvus import DataType

    milvus = client(settings)
    names = collection_names(settings, version, list(vectors))
    kinds: dict[str, Any] = {}
    entry = {"name": NAME, "uri": milvus_uri(settings), "collection": names[PRIMARY], "collections": names, "alias": settings.milvus_alias}
    try:
        for role, matrix in vectors.items():
            schema = milvus.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            if role == PRIMARY:
                for name in ("document", "title", "section", "format"):
                    schema.add_field(name, DataType.VARCHAR, max_length=NAME_MAX)
                for name in ("start", "end", "line_start", "line_end", "page_start", "page_end"):
                    schema.add_field(name, DataType.INT64)  # pages: 0 = the format has none
                schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX)
                schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            else:
                schema.add_field("owner", DataType.INT64)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(matrix.shape[1]))
            params, kinds[role] = _index_params(milvus, "vector", len(matrix))
            if role == PRIMARY:
                params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
            with _quiet():
                if milvus.has_collection(names[role]):  # a leftover of a killed build with this very name
                    milvus.drop_collection(names[role])
            milvus.create_collection(names[role], schema=schema, index_params=params)
            rows = _passage_rows(passages, matrix, bm25) if role == PRIMARY else _unit_rows(matrix, owners[role])
            for batch in _batches(rows):
                milvus.insert(names[role], batch)
            milvus.flush(names[role])
        return {"store": entry, "dense_index": kinds}
    except BaseException:
        drop(settings, entry)
        raise


def _passage_rows(passages: Sequence[Passage], matrix: np.ndarray, bm25: bm25s.BM25) -> Iterator[dict[str, Any]]:
    sparse = passage_sparse(bm25, len(passages))
    empty_id = len(bm25.scores["indptr"])  # Milvus refuses an empty sparse vector; no query has this id
    for i, p in enumerate(passages):
        lo, hi = sparse.indptr[i], sparse.indptr[i + 1]
        weights = {int(t): float(w) for t, w in zip(sparse.indices[lo:hi], sparse.data[lo:hi], strict=True) if w}
        yield {
            "id": i,
            "document": p.doc_id,
            "title": p.title,
            "section": " > ".join(p.section),
            "format": p.format,
            "start": p.start,
            "end": p.end,
            "line_start": p.line_start,
            "line_end": p.line_end,
            "page_start": p.page_start or 0,
            "page_end": p.page_end or 0,
            "text": p.text,
            "sparse": weights or {empty_id: 1.0},
            "vector": matrix[i].tolist(),
        }


def _unit_rows(matrix: np.ndarray, owners: Sequence[int] | np.ndarray) -> Iterator[dict[str, Any]]:
    for i, owner in enumerate(owners):
        yield {"id": i, "owner": int(owner), "vector": matrix[i].tolist()}


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def publish(settings: Settings, entry: Mapping[str, Any]) -> None:
    """Point `<alias>` (passages) and `<alias>_<role>` at this version's collections, for outside readers."""
    milvus = client(settings)
    for role, name in entry["collections"].items():
        alias = entry["alias"] if role == PRIMARY else f"{entry['alias']}_{role}"
        if _alias_target(milvus, alias) is None:
            milvus.create_alias(name, alias)
        else:
            milvus.alter_alias(name, alias)


def _alias_target(milvus: Any, alias: str) -> str | None:
    for name in milvus.list_collections():
        if alias in milvus.list_aliases(name).get("aliases", []):
            return str(name)
    return None


def sweep(settings: Settings, keep: Collection[str]) -> None:
    """Drop every collection under this index's alias prefix that belongs to no kept version (nor the alias's)."""
    milvus = client(settings)
    bases = {collection_names(settings, version, [PRIMARY])[PRIMARY] for version in keep}
    bases.add(_alias_target(milvus, settings.milvus_alias) or "")
    for name in milvus.list_collections():
        if name.startswith(f"{settings.milvus_alias}_v") and not any(name == b or name.startswith(f"{b}_") for b in bases if b):
            with _quiet(), contextlib.suppress(Exception):
                milvus.drop_collection(name)


def drop(settings: Settings, entry: Mapping[str, Any]) -> None:
    """Drop a version's collections (those that exist)."""
    milvus = client(settings)
    for name in entry.get("collections", {}).values():
        with _quiet(), contextlib.suppress(Exception):
            if milvus.has_collection(name):
                milvus.drop_collection(name)


@dataclass
class MilvusStore:
    """A loaded version: searches the collections its manifest names."""

    milvus: Any
    collections: dict[str, str]
    search_params: dict[str, dict[str, Any]]
    bm25: bm25s.BM25
    counts: dict[str, int]
    name: str = NAME

    @classmethod
    def open(cls, settings: Settings, entry: Mapping[str, Any], bm25: bm25s.BM25, dense_index: Mapping[str, Any]) -> MilvusStore:
        fix = f"run `rag index --index {settings.index_dir}` to rebuild it"
        uri = milvus_uri(settings)
        if entry.get("uri") != uri:
            raise IndexInvalidError(f"index was built into Milvus at {entry.get('uri')}, but RAG_MILVUS_URI is {uri}; {fix}")
        milvus = client(settings)
        counts = {}
        for role, name in entry["collections"].items():
            if not milvus.has_collection(name):
                raise IndexInvalidError(f"collection {name} of the index is missing from Milvus at {entry['uri']}; {fix}")
            milvus.load_collection(name)
            counts[role] = int(milvus.get_collection_stats(name)["row_count"])
        params = {role: dict(dense_index.get(role, {}).get("search", {})) for role in entry["collections"]}
        return cls(milvus, dict(entry["collections"]), params, bm25, counts)

    def dense(self, role: str, query: np.ndarray, k: int) -> Ranking:
        k = min(k, self.counts[role])
        if k <= 0:
            return empty()
        vector = np.asarray(query, dtype=np.float32).reshape(-1).tolist()
        search = {"metric_type": "IP", "params": self.search_params[role]}
        hits = self.milvus.search(self.collections[role], [vector], anns_field="vector", limit=k, search_params=search, output_fields=ID)
        return _ranking(hits[0])

    def keyword(self, tokens: list[str], k: int) -> Ranking:
        query = query_sparse(self.bm25, tokens)
        if not query or k <= 0:
            return empty()
        search = {"metric_type": "IP", "params": {}}
        hits = self.milvus.search(self.collections[PRIMARY], [query], anns_field="sparse", limit=k, search_params=search, output_fields=ID)
        ranking = _ranking(hits[0])
        keep = ranking.scores > 0
        return Ranking(ranking.ids[keep], ranking.scores[keep])

    def rows(self, role: str) -> int:
        return self.counts[role]


def _ranking(hits: Sequence[Mapping[str, Any]]) -> Ranking:
    """Milvus hits as a Ranking, ties broken by the lower id as FAISS and bm25s do."""
    if not hits:
        return empty()
    ids = np.array([int(h["id"]) for h in hits], dtype=np.int64)
    scores = np.array([float(h["distance"]) for h in hits], dtype=np.float32)
    order = np.lexsort((ids, -scores))
    return Ranking(ids[order], scores[order])
