"""bench/perf_store_scale.py on a tiny real run: its recall@10 and both stores' id mapping are right."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import perf_store_scale as bench
import scale_corpus


def _unit(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_recall_counts_shared_ids_and_ignores_padding() -> None:
    truth = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert bench.recall_at_k(truth, truth) == 1.0
    half = np.array([[1, 2, 9, 10], [8, 7, -1, -1]])  # order does not matter; -1 is "no hit"
    assert bench.recall_at_k(half, truth) == 0.5
    assert bench.recall_at_k(np.full((2, 4), -1), truth) == 0.0


def test_exact_stores_agree_and_a_coarse_ivf_loses_recall() -> None:
    x, q = _unit(600), _unit(30, seed=1)
    truth = bench.exact_ids(x, q)
    texts = [f"passage {i}" for i in range(len(x))]
    faiss_exact = bench.measure(("faiss", "exact", "exact", [("-", {})]), x, q, truth, texts)
    milvus_flat = bench.measure(("milvus", "flat", "FLAT", [("-", {})]), x, q, truth, texts)
    assert faiss_exact[0]["recall"] == 1.0 and milvus_flat[0]["recall"] == 1.0  # Milvus ids map back to rows
    # 64 lists, one probed, on structureless vectors: most true neighbours sit in other lists.
    index = bench.faiss.index_factory(32, "IVF64,Flat", bench.faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    _, found = bench.time_queries(bench.faiss_searcher(index, {"nprobe": 1}), q)
    assert bench.recall_at_k(found, truth) < 0.6


def test_pack_cuts_on_sentence_ends_within_bounds() -> None:
    text = "".join(f"第{i}句话说的是一件很普通的事情，没有别的意思。" for i in range(40))
    passages = scale_corpus.pack(text)
    assert "".join(passages) == text
    assert all(p.endswith("。") for p in passages)
    assert all(scale_corpus.MIN_CHARS <= len(p) <= scale_corpus.MAX_CHARS for p in passages)
