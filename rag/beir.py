"""Public benchmarks in the BEIR layout: corpus.jsonl, queries.jsonl, qrels.tsv.

Each corpus line is one passage, cited by its `_id`; it is indexed in memory (nothing is written,
nothing is copied into the repo) with the same encoders, tokens and fusion as the product.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rag import dense, keyword, late
from rag.chunk import Passage, embedding_units, keyword_text
from rag.config import Settings
from rag.encoders import PRIMARY, Encoder
from rag.errors import RagError
from rag.index import Index, hubness_by_role
from rag.store import Store
from rag.store.local import LocalStore
from rag.tokenize import tokenize

_MEMORY = itertools.count()  # numbers the in-memory indexes of one process (their Milvus collections)


class Benchmark(NamedTuple):
    name: str
    passages: list[Passage]
    queries: dict[str, str]  # query id -> text
    qrels: dict[str, set[str]]  # query id -> relevant corpus ids


def load_benchmark(folder: Path) -> Benchmark:
    """Read a BEIR folder; a missing or malformed file is one clear error."""
    try:
        passages = []
        with open(folder / "corpus.jsonl", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    text = str(row["text"])
                    passages.append(Passage(str(row["_id"]), str(row.get("title", "")), (), 0, len(text), 1, 1, text))
        with open(folder / "queries.jsonl", encoding="utf-8") as f:
            queries = {str(row["_id"]): str(row["text"]) for row in map(json.loads, filter(str.strip, f))}
        qrels: dict[str, set[str]] = defaultdict(set)
        with open(folder / "qrels.tsv", encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if int(row.get("score", 1)) > 0:
                    qrels[row["query-id"]].add(row["corpus-id"])
    except (OSError, ValueError, KeyError) as exc:
        raise RagError(f"{folder} is not a BEIR folder (corpus.jsonl, queries.jsonl, qrels.tsv): {exc}") from exc
    return Benchmark(folder.name, passages, {q: t for q, t in queries.items() if q in qrels}, dict(qrels))


def index_in_memory(
    passages: list[Passage],
    encoders: dict[str, Encoder],
    units: Mapping[str, str],
    progress: bool = True,
    *,
    settings: Settings | None = None,
) -> Index:
    """The same index a build makes, kept in RAM; `units` as from `rag.index.embedding_units_by_role`.

    With `settings` whose RAG_STORE is milvus, the vectors and keywords go into a temporary Milvus
    collection instead (dropped when the process exits), so `rag eval --beir` measures that store.
    """
    vectors, owners = {}, {}
    late_rows, piece_idf = None, None
    for role, enc in encoders.items():
        texts, owned_by = embedding_units(passages, units.get(role, "passage"))
        if role == PRIMARY and (settings is None or settings.late_tokens) and getattr(enc, "has_tokens", False):
            vectors[role], rows = enc.passage_tokens(texts, progress=progress)  # type: ignore[attr-defined]
            matrix, offsets = late.pack(rows, enc.projection.dim)  # type: ignore[attr-defined]
            late_rows = (late.searchable(matrix), offsets)
            counts = late.piece_counts(enc, texts)
            piece_idf = late.piece_idf(counts, len(texts)) if counts is not None else None
        else:
            vectors[role] = enc.encode_passages(texts, progress=progress)
        owners[role] = np.array(owned_by, dtype=np.int64)
    manifest: dict[str, Any] = {
        "model": {"name": encoders[PRIMARY].name, "dim": encoders[PRIMARY].dim},
        "encoders": {role: {"name": enc.name, "dim": enc.dim} for role, enc in encoders.items()},
        "passages": len(passages),
        "chunking": {"units": dict(units)},  # what Retriever.sentence_similarities reads, as in a built index
        "late": {"tokens": len(late_rows[0])} if late_rows is not None else None,
    }
    bm25 = keyword.build([tokenize(keyword_text(p)) for p in passages])
    search: Store
    if settings is not None and settings.store == "milvus":
        from rag.store import milvus

        built = milvus.build(settings, f"mem-{os.getpid()}-{next(_MEMORY)}", vectors, owners, passages, bm25)
        milvus.drop_at_exit(settings, built["store"])
        search = milvus.MilvusStore.open(settings, built["store"], bm25, built["dense_index"])
        manifest |= built
    else:
        search = LocalStore({role: dense.build(matrix) for role, matrix in vectors.items()}, bm25)
    return Index(
        path=Path("<memory>"),
        manifest=manifest,
        passages=passages,
        embeddings=vectors,
        store=search,
        keyword=bm25,
        owners=owners,
        hubness=hubness_by_role(vectors),
        late=late_rows,
        piece_idf=piece_idf,
    )
