"""The index folder: build it, switch to it atomically, load it back and check it.

Layout (the folder says how it was built, so a stale or foreign index is caught on load):

    index/
      CURRENT             name of the live version, replaced atomically (write aside, rename)
      .lock               held (flock) by the one process that is building; holds its pid
      v<time>-<pid>/      one complete version
        manifest.json     model, chunking, corpus file hashes, counts, library versions, and the
                          sha256 of every other file here (checked on load)
        passages.jsonl    passages with citations (format, pages)
        documents.jsonl   each document's canonical text, structure and pages (GET /documents/{id})
        embeddings-<role>.npy  vectors of each encoder role (primary, second), one row per unit
                               (a passage, or a sentence of one: see chunk.embedding_units)
        owners-<role>.npy      the passage each row belongs to
        hubness-second.npy     each second-encoder row's mean cosine to its 5 nearest rows (dense.hubness)
        tokens-primary.npy     e5's projected token vectors of every passage, float16 (rag/late.py), and
        token-offsets-primary.npy  where each passage's rows start (absent with RAG_LATE_TOKENS=0), and
        token-pieces-primary.npy   how many passages hold each tokenizer piece (the question tokens' idf)
        keys-<role>.npy        sha256(model + embedded text) of each row: the embedding cache key
        dense-<role>.faiss     FAISS inner-product index of each role (RAG_STORE=local; with milvus
                               the vectors are in the version's Milvus collection, see rag/store/)
        keyword/          bm25s index over jieba tokens (both stores: vocabulary, postings, BM25 weights)

A build is incremental (see rag/incremental.py): it re-chunks the whole corpus (cheap, and always
current with the chunker's code), embeds only passages whose embedded text has no cached vector in
the live version, and rebuilds BM25 in full (its statistics are corpus-wide). It writes the new
version under a temporary name, renames it into place, then points CURRENT at it; a build that dies
at any point leaves CURRENT on the last good version, and the next build sweeps up its leftovers.

Test hook: RAG_TEST_PAUSE_AT=<point> makes a build print `paused at <point>` to stderr and sleep
there, so a test can SIGKILL it at a known place. Points, in order: embedded, writing, written,
renamed, switched (see PAUSE_POINTS).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from rag import confidence, dense, keyword, late
from rag import store as stores
from rag.chunk import UNITS, Passage, chunk, embedding_units, keyword_text
from rag.config import Settings
from rag.encoders import PRIMARY, SECOND, Encoder
from rag.errors import CorpusError, IndexInvalidError, IndexMissingError, RagError
from rag.homophones import Homophones
from rag.incremental import (
    DocumentChanges,
    diff_documents,
    embedding_identities,
    embedding_keys,
    read_previous,
    save_keys,
)
from rag.index_files import (
    Stage,
    check_files,
    checksums,
    current_version,
    fsync_dir,
    fsync_tree,
    live_version_or_note,
    point_current,
    remove_old_versions,
    version_file,
    writer_lock,
)
from rag.ingest import SUFFIXES, Document, load_corpus
from rag.late import PieceIdf
from rag.records import DOCUMENTS, PASSAGES, passage_to_json, read_documents, read_passages, write_documents, write_jsonl
from rag.store import Store
from rag.tokenize import known_word, tokenize

FORMAT_VERSION = 3  # 2: per-file checksums and embedding cache keys; 3: documents.jsonl, passage formats and pages
PAUSE_POINTS = ("embedded", "writing", "written", "renamed", "switched")

# The encoders themselves, or a function that loads them: a build calls it only when some passage
# has no cached vector, so deleting a document or re-running on an unchanged corpus loads no model.
Encoders = Mapping[str, Encoder] | Callable[[], Mapping[str, Encoder]]
LIBRARIES = ("faiss-cpu", "bm25s", "jieba", "sentence-transformers", "transformers", "torch", "numpy", "pymilvus", "milvus-lite")


@dataclass
class Index:
    """A loaded index version: everything a search needs, read-only once built."""

    path: Path
    manifest: dict[str, Any]
    passages: list[Passage]
    embeddings: dict[str, np.ndarray]  # by encoder role, one row per unit
    store: Store  # searches each role's unit rows and the keywords (rag/store/: local FAISS + bm25s, or Milvus)
    keyword: Any  # bm25s.BM25: vocabulary and postings (expansion, confidence)
    owners: dict[str, np.ndarray]  # by encoder role: the passage of each unit (row)
    hubness: dict[str, np.ndarray] = field(default_factory=dict)  # by role, where computed: see dense.hubness
    documents: dict[str, Document] = field(default_factory=dict)  # canonical text of each document, by id
    late: tuple[np.ndarray, np.ndarray] | None = None  # token rows and per-passage offsets (rag/late.py), when built
    piece_idf: PieceIdf | None = None  # what MaxSim weighs question tokens by; None: all alike (built before it)

    @cached_property
    def titles(self) -> dict[str, str]:
        """Each document's title as its passages carry it (the chunker's, where the reader gave none)."""
        return {p.doc_id: p.title for p in reversed(self.passages)}

    @cached_property
    def vocabulary(self) -> frozenset[str]:
        """Every keyword token of the corpus; English expansion keeps only translations in it."""
        return frozenset(self.keyword.vocab_dict)

    @cached_property
    def homophones(self) -> Homophones:
        """The corpus's Chinese words by how they sound, for mending typos (rag/homophones.py)."""
        count = lambda word: keyword.postings(self.keyword, word).size  # noqa: E731
        return Homophones(self.vocabulary, count, known_word, (p.text for p in self.passages))


@dataclass
class BuildReport:
    path: Path
    documents: int
    passages: int
    skipped: list[tuple[str, str]]
    seconds: float
    changes: DocumentChanges
    embedded: int  # passages whose vectors were computed (not taken from the live version)

    def summary(self) -> str:
        """The one line `rag index` prints about what it did."""
        c = self.changes
        return (
            f"added {len(c.added)}, changed {len(c.changed)}, removed {len(c.removed)}, unchanged {len(c.unchanged)} documents; "
            f"embedded {self.embedded} passages"
        )


# --- reading -------------------------------------------------------------------------------------


def load_index(settings: Settings, path: Path | None = None) -> Index:
    """Load and check the live version (or `path`); any problem becomes one error that says to run `rag index`."""
    path = path or current_version(settings.index_dir)
    if path is None:
        raise IndexMissingError(f"no index in {settings.index_dir}; run `rag index` to build it")
    fix = f"run `rag index --index {settings.index_dir}` to rebuild it"
    if path.is_symlink() or not path.is_dir():
        raise IndexInvalidError(f"index version {path} is missing or not a folder; {fix}")
    try:
        manifest = json.loads(version_file(path, "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexInvalidError(f"index at {path} is unreadable ({exc}); {fix}") from exc
    if not isinstance(manifest, dict):
        raise IndexInvalidError(f"index at {path} has a damaged manifest.json; {fix}")
    try:
        check_manifest(manifest, settings, fix)
        check_files(path, manifest.get("files"), fix)
        return _load_checked(settings, path, manifest, fix)
    except RagError:
        raise
    except Exception as exc:  # a manifest with the right files but wrong types: still one clear error
        raise IndexInvalidError(f"index at {path} has a damaged manifest.json ({type(exc).__name__}: {exc}); {fix}") from exc


def _load_checked(settings: Settings, path: Path, manifest: dict[str, Any], fix: str) -> Index:
    """The arrays and indexes of a version whose manifest and checksums have been checked."""
    try:
        passages = read_passages(path / PASSAGES)
        documents = read_documents(path / DOCUMENTS)
        roles = list(manifest["encoders"])
        embeddings = {role: np.load(path / f"embeddings-{role}.npy", allow_pickle=False) for role in roles}
        owners = {role: np.load(path / f"owners-{role}.npy", allow_pickle=False) for role in roles}
        hubs = {role: np.load(path / f"hubness-{role}.npy", allow_pickle=False) for role in manifest.get("hubness", {})}
        keyword_index = keyword.load(path / "keyword")
        late_rows = late.load_rows(path, manifest, len(passages))
        piece_idf = late.load_piece_idf(path, manifest) if late_rows is not None else None
        search = stores.open_store(settings, path, manifest, keyword_index)
    except RagError:
        raise
    except Exception as exc:  # faiss, numpy and bm25s each raise their own types for a bad file
        raise IndexInvalidError(f"index at {path} is damaged ({type(exc).__name__}: {exc}); {fix}") from exc
    if len({len(passages), manifest["passages"]}) != 1:
        raise IndexInvalidError(f"index at {path} is inconsistent ({len(passages)} passages, manifest says {manifest['passages']}); {fix}")
    for role in roles:
        rows = {len(embeddings[role]), len(owners[role]), search.rows(role)}
        if role in hubs:
            rows.add(len(hubs[role]))
        if len(rows) != 1 or (len(owners[role]) and not 0 <= int(owners[role].min()) <= int(owners[role].max()) < len(passages)):
            raise IndexInvalidError(f"index at {path} is inconsistent ({role} rows {sorted(rows)} for {len(passages)} passages); {fix}")
    return Index(path, manifest, passages, embeddings, search, keyword_index, owners, hubs, documents, late_rows, piece_idf)


def check_manifest(manifest: dict[str, Any], settings: Settings, fix: str) -> None:
    """Refuse an index made by another format version, model or chunking."""
    if not isinstance(manifest.get("encoders"), dict) or not all(isinstance(v, dict) for v in manifest["encoders"].values()):
        raise IndexInvalidError(f"index manifest has no valid `encoders` entry; {fix}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexInvalidError(f"index format {manifest.get('format_version')!r} is not the supported {FORMAT_VERSION}; {fix}")
    built_with = {role: spec.get("name") for role, spec in manifest.get("encoders", {}).items()}
    wanted = encoder_names(settings)
    if built_with != wanted:
        raise IndexInvalidError(f"index was built with models {built_with}, but the configured models are {wanted}; {fix}")
    if manifest.get("passage_prompt") != settings.passage_prompt:
        raise IndexInvalidError(
            f"index passages were embedded with prompt {manifest.get('passage_prompt')!r}, now RAG_PASSAGE_PROMPT is "
            f"{settings.passage_prompt!r}; {fix}"
        )
    if manifest.get("chunking") != chunking_config(settings):
        raise IndexInvalidError(f"index was built with chunking {manifest.get('chunking')}, now {chunking_config(settings)}; {fix}")


def encoder_names(settings: Settings) -> dict[str, str]:
    """The model name of each encoder role the settings ask for."""
    names = {PRIMARY: settings.model}
    if settings.second_model:
        names[SECOND] = settings.second_model
    return names


def embedding_units_by_role(settings: Settings) -> dict[str, str]:
    """What each encoder role embeds: "passage" or "sentence" (see chunk.embedding_units)."""
    if settings.second_units not in UNITS:
        raise RagError(f"RAG_SECOND_UNITS must be one of {', '.join(UNITS)}, got {settings.second_units!r}")
    return {role: settings.second_units if role == SECOND else "passage" for role in encoder_names(settings)}


def hubness_by_role(vectors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """dense.hubness of the second encoder's vectors only: the cross-lingual signal, where hubs hurt
    English questions (docs/quality.md)."""
    return {role: dense.hubness(matrix) for role, matrix in vectors.items() if role == SECOND}


def chunking_config(settings: Settings) -> dict[str, Any]:
    return {"max_chars": settings.max_chars, "units": embedding_units_by_role(settings)}


# --- writing -------------------------------------------------------------------------------------


def build_index(
    settings: Settings,
    encoders: Encoders,
    progress: bool = True,
    *,
    full: bool = False,
    wait: bool = True,
    stage: Stage | None = None,
) -> BuildReport:
    """Bring the index up to date with the corpus in a new version, then switch to it.

    Incremental unless `full`: vectors of passages whose embedded text is unchanged are copied from
    the live version. `wait=False` raises IndexBusyError instead of waiting for another build.
    `stage` hears what the build is doing (for progress reports).
    """
    report = stage or (lambda _: None)
    with writer_lock(settings.index_dir, wait=wait, on_wait=stage):
        return _build(settings, _loader(encoders), progress, full, report)


def _loader(encoders: Encoders) -> Callable[[], Mapping[str, Encoder]]:
    """Call the encoder factory at most once."""
    if not callable(encoders):
        return lambda: encoders
    loaded: list[Mapping[str, Encoder]] = []

    def load() -> Mapping[str, Encoder]:
        if not loaded:
            loaded.append(encoders())
        return loaded[0]

    return load


def _build(settings: Settings, encoders: Callable[[], Mapping[str, Encoder]], progress: bool, full: bool, stage: Stage) -> BuildReport:
    started = time.perf_counter()
    confidence_model = confidence.describe(settings.confidence_model)  # a bad RAG_CONFIDENCE_MODEL fails before any work
    stage("reading the corpus")
    identities = embedding_identities(settings)
    live, damaged = live_version_or_note(settings.index_dir)
    if damaged:
        print(f"note: {damaged}", file=sys.stderr)
    projection = late.load_projection() if settings.late_tokens else None
    previous = read_previous(live, identities, FORMAT_VERSION, reuse=not full, late=projection.version if projection else "")
    if previous.note:
        print(f"note: {previous.note}", file=sys.stderr)
    docs, skipped = load_corpus(settings.corpus_dir, cached=previous.documents)  # unchanged files are not parsed again
    for item in skipped:
        print(f"skipped {item.id}: {item.reason}", file=sys.stderr)
    if not docs:
        raise CorpusError(f"no readable documents ({', '.join(SUFFIXES)}) in {settings.corpus_dir}; add some and run `rag index` again")
    changes = diff_documents(previous.files, {d.id: d.sha256 for d in docs})

    stage("chunking")
    passages = [p for doc in docs for p in chunk(doc, settings.max_chars)]
    if not passages:
        raise CorpusError(f"the documents in {settings.corpus_dir} contain no text to index")
    units = embedding_units_by_role(settings)
    vectors: dict[str, np.ndarray] = {}
    keys: dict[str, list[bytes]] = {}
    owners: dict[str, list[int]] = {}
    touched: set[int] = set()  # passages with at least one unit embedded afresh
    token_rows: list[np.ndarray] | None = None
    primary_texts: list[str] = []
    for role, identity in identities.items():
        texts, owners[role] = embedding_units(passages, units[role])
        if role == PRIMARY:
            primary_texts = texts
        keys[role] = embedding_keys(identity, texts)
        todo = previous.missing(role, keys[role], texts)
        with_tokens = role == PRIMARY and projection is not None
        if with_tokens:
            todo = previous.missing_tokens(keys[role], texts, todo)
        new, new_rows = None, None
        if todo:
            stage(f"embedding {len(todo)} of {len(texts)} {units[role]}s ({role})")
            encoder = _encoder(encoders(), role, settings)
            if with_tokens and getattr(encoder, "has_tokens", False):  # the vectors and token rows of one pass
                new, new_rows = encoder.passage_tokens(list(todo.values()), projection, progress=progress)  # type: ignore[attr-defined]
            else:
                new = encoder.encode_passages(list(todo.values()), progress=progress)
        vectors[role] = previous.assemble(role, keys[role], list(todo), new)
        if with_tokens:
            token_rows = previous.assemble_tokens(keys[role], list(todo), new_rows)
        touched.update(owner for owner, key in zip(owners[role], keys[role], strict=True) if key in todo)
    embedded = len(touched)
    _pause("embedded")

    stage(f"indexing keywords of {len(passages)} passages")
    tokens = [tokenize(keyword_text(p)) for p in passages]

    stage("writing the new version")
    name = f"v{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{os.getpid()}"
    tmp = settings.index_dir / f".tmp-{name}"
    final = settings.index_dir / name
    tmp.mkdir(parents=True)
    built: dict[str, Any] = {}
    try:
        write_jsonl(tmp / PASSAGES, (passage_to_json(p) for p in passages))
        write_documents(tmp / DOCUMENTS, docs)
        _pause("writing")
        for role, matrix in vectors.items():
            np.save(tmp / f"embeddings-{role}.npy", matrix, allow_pickle=False)
            np.save(tmp / f"owners-{role}.npy", np.array(owners[role], dtype=np.int64), allow_pickle=False)
            save_keys(keys[role], tmp / f"keys-{role}.npy")
        late_info = late.save_rows(tmp, token_rows, projection) if token_rows is not None and projection is not None else None
        if late_info is not None:  # the question tokens' idf weights, over every passage (tokenizing only, when anything changed)
            counts = previous.counts_for(keys[PRIMARY])
            if counts is None:
                counts = late.piece_counts(_encoder(encoders(), PRIMARY, settings), primary_texts)
            late_info["idf"] = late.save_piece_counts(tmp, counts, len(primary_texts)) if counts is not None else None
        stage("measuring hubness")
        hub_kinds = {}
        for role, hubs in hubness_by_role(vectors).items():
            np.save(tmp / f"hubness-{role}.npy", hubs, allow_pickle=False)
            hub_kinds[role] = {"k": dense.HUB_K, "reference": min(len(hubs), dense.HUB_REFERENCE)}
        bm25 = keyword.build(tokens)
        keyword.save(bm25, tmp / "keyword")
        stage(f"writing the {settings.store} store")
        built = stores.build(settings, name, tmp, vectors, owners, passages, bm25)  # FAISS files, or a new collection aside
        manifest = {
            "format_version": FORMAT_VERSION,
            "model": {"name": settings.model, "dim": int(vectors[PRIMARY].shape[1])},
            "encoders": {role: {"name": n, "dim": int(vectors[role].shape[1])} for role, n in encoder_names(settings).items()},
            "chunking": chunking_config(settings),
            "passage_prompt": settings.passage_prompt,
            "store": built["store"],
            "dense_index": built["dense_index"],
            "hubness": hub_kinds,
            "late": late_info,  # late interaction's token rows (rag/late.py), or None when not built
            "keyword_index": "bm25s over jieba search-mode tokens",
            "confidence": confidence_model,  # the model `answerable` was built to be read with (rag/confidence.py)
            "corpus": {"dir": str(settings.corpus_dir), "files": {d.id: d.sha256 for d in docs}},
            "skipped": {s.id: s.reason for s in skipped},
            "documents": len(docs),
            "passages": len(passages),
            "build": {"full": full, "embedded": embedded, "previous": live.name if live else None},
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_seconds": round(time.perf_counter() - started, 3),
            "versions": _library_versions(),
            "files": checksums(tmp),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
        fsync_tree(tmp)
        _pause("written")
        os.replace(tmp, final)
        fsync_dir(settings.index_dir)
        _pause("renamed")
        stage("switching to the new version")
        point_current(settings.index_dir, name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if live_version_or_note(settings.index_dir)[0] != final:
            shutil.rmtree(final, ignore_errors=True)
            with contextlib.suppress(Exception):  # the live version's collection is never this one
                stores.discard(settings, built.get("store"))
        raise
    _pause("switched")
    try:
        stores.publish(settings, built["store"])  # outside readers' alias follows CURRENT
    except Exception as exc:  # the version is live and searched by name; only the alias lags
        print(f"note: could not point the Milvus alias at {name} ({exc}); the next build retries", file=sys.stderr)
    keep = {name, live.name if live else name}
    remove_old_versions(settings.index_dir, keep=keep)
    stores.sweep(settings, keep)  # collections of removed versions and of killed builds
    seconds = time.perf_counter() - started
    return BuildReport(final, len(docs), len(passages), [(s.id, s.reason) for s in skipped], seconds, changes, embedded)


def _encoder(encoders: Mapping[str, Encoder], role: str, settings: Settings) -> Encoder:
    """The encoder of `role`, which must be the model the settings (and so the cache keys) name."""
    wanted = encoder_names(settings)[role]
    encoder = encoders.get(role)
    if encoder is None or encoder.name != wanted:
        found = encoder.name if encoder is not None else None
        raise RagError(f"the {role} encoder is {found!r} but the settings name {wanted!r}")
    return encoder


def _pause(point: str) -> None:
    """Test hook (RAG_TEST_PAUSE_AT): stop the build here so a test can kill it at a known point."""
    if os.environ.get("RAG_TEST_PAUSE_AT") == point:
        print(f"paused at {point}", file=sys.stderr, flush=True)
        time.sleep(3600)


def _library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions
