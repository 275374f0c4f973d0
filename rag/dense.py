"""Dense side: FAISS inner product over L2-normalised vectors (= cosine similarity).

The index type is chosen by corpus size (measured by bench/perf_scale.py, see docs/performance.md):
an exact `IndexFlatIP` up to `EXACT_MAX` vectors, above that an inverted file (`IndexIVFFlat`,
inner product) with about 4*sqrt(n) lists and `nprobe` chosen for recall@10 >= 0.95 against exact
search on real e5 vectors (bench/perf_store_scale.py: 100k real Chinese passages need 96 of 1,024
lists; synthetic vectors had suggested 16). `describe(index)` gives the type and parameters for the index manifest.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from rag.fusion import Ranking, empty

#: Up to this many vectors the exact index is used (at 384 dimensions on 2 cores an exact search over
#: 50k vectors takes a few ms; beyond it the scan grows linearly, see docs/performance.md).
EXACT_MAX = 50_000
#: Inverted-file parameters: nlist = IVF_LISTS_PER_SQRT * sqrt(n), rounded to a power of two,
#: and the share of lists probed per query (at least IVF_MIN_NPROBE).
IVF_LISTS_PER_SQRT = 4.0
IVF_NPROBE_SHARE = 3 / 32
IVF_MIN_NPROBE = 16
#: k-means trains on at most this many points per list (FAISS warns below 39).
IVF_TRAIN_PER_LIST = 40


def ivf_params(n: int) -> tuple[int, int]:
    """(nlist, nprobe) for n vectors."""
    nlist = 2 ** round(math.log2(max(IVF_LISTS_PER_SQRT * math.sqrt(max(n, 1)), 16)))
    nprobe = min(nlist, max(IVF_MIN_NPROBE, round(nlist * IVF_NPROBE_SHARE)))
    return int(nlist), int(nprobe)


def build(vectors: np.ndarray, exact_max: int | None = None, seed: int = 1234) -> faiss.Index:
    """Exact up to `exact_max` (default EXACT_MAX) vectors, an IVF index above it."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    limit = EXACT_MAX if exact_max is None else exact_max
    if n <= limit:
        index = faiss.IndexFlatIP(dim)
        if n:
            index.add(vectors)
        return index
    nlist, nprobe = ivf_params(n)
    ivf: Any = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)  # owns its quantizer
    ivf.cp.seed = seed
    train_n = min(n, nlist * IVF_TRAIN_PER_LIST)
    rng = np.random.default_rng(seed)
    sample = vectors if train_n == n else vectors[np.sort(rng.choice(n, train_n, replace=False))]
    ivf.train(sample)
    ivf.add(vectors)
    ivf.nprobe = nprobe
    return ivf


def describe(index: faiss.Index) -> dict[str, Any]:
    """Type and parameters of an index built here, for the index manifest."""
    out: dict[str, Any] = {"type": type(index).__name__, "metric": "inner_product", "dim": int(index.d), "ntotal": int(index.ntotal)}
    ivf = faiss.try_extract_index_ivf(index) if not isinstance(index, faiss.IndexFlat) else None
    if ivf is not None:
        out |= {"nlist": int(ivf.nlist), "nprobe": int(ivf.nprobe)}
    hnsw = getattr(index, "hnsw", None)
    if hnsw is not None:
        out |= {"M": int(hnsw.nb_neighbors(1)), "efConstruction": int(hnsw.efConstruction), "efSearch": int(hnsw.efSearch)}
    return out


def save(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def load(path: Path) -> faiss.Index:
    """Any index written by `save`; an IVF index keeps the nprobe it was saved with."""
    return faiss.read_index(str(path))


def search(index: faiss.Index, query: np.ndarray, k: int) -> Ranking:
    """Top-k passage ids and cosine scores for one query vector."""
    k = min(k, index.ntotal)
    if k <= 0:
        return empty()
    scores, ids = index.search(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), k)
    keep = ids[0] >= 0
    return Ranking(ids[0][keep].astype(np.int64), scores[0][keep])


def best_per_passage(ranking: Ranking, owners: np.ndarray, k: int) -> Ranking:
    """Unit hits (sentences) -> passage hits, each passage scored by its best unit, best first."""
    if ranking.ids.size == 0:
        return ranking
    passages = owners[ranking.ids]
    _, first = np.unique(passages, return_index=True)  # first = best, as hits come best first
    first.sort()
    return Ranking(passages[first][:k], ranking.scores[first][:k])


HUB_K, HUB_REFERENCE = 5, 20_000  # neighbours averaged, rows sampled as neighbours above that many


def hubness(vectors: np.ndarray, k: int = HUB_K, reference: int = HUB_REFERENCE, block: int = 1024, seed: int = 1234) -> np.ndarray:
    """Each row's mean cosine to its k nearest other rows (among a random sample of `reference` rows
    when there are more). High for "hub" rows that are close to everything; CSLS-style retrieval
    subtracts it. Blocked, so memory stays at block x reference floats."""
    n = len(vectors)
    if n <= 1:
        return np.zeros(n, dtype=np.float32)
    rows = np.arange(n) if n <= reference else np.sort(np.random.default_rng(seed).choice(n, reference, replace=False))
    ref = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    position = np.full(n, -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    k = min(k, len(rows) - 1)
    out = np.empty(n, dtype=np.float32)
    for start in range(0, n, block):
        sims = np.asarray(vectors[start : start + block], dtype=np.float32) @ ref.T
        own = position[start : start + block]
        inside = np.flatnonzero(own >= 0)
        sims[inside, own[inside]] = -np.inf  # a row is not its own neighbour
        out[start : start + block] = np.partition(sims, -k, axis=1)[:, -k:].mean(axis=1)
    return out
