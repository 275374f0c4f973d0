"""rag.dense: index type by size, describe(), save/load/search for every type."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rag import dense


def _unit(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_below_threshold(tmp_path: Path) -> None:
    x = _unit(100)
    index = dense.build(x)
    assert dense.describe(index)["type"] == "IndexFlatIP"
    dense.save(index, tmp_path / "d.faiss")
    hit = dense.search(dense.load(tmp_path / "d.faiss"), x[7], 3)
    assert hit.ids[0] == 7 and abs(float(hit.scores[0]) - 1.0) < 1e-5


def test_empty_index() -> None:
    index = dense.build(np.zeros((0, 8), dtype=np.float32))
    assert dense.describe(index)["ntotal"] == 0
    assert dense.search(index, np.ones(8, dtype=np.float32), 5).ids.size == 0


def test_ivf_above_threshold_round_trips(tmp_path: Path) -> None:
    x = _unit(5000)
    index = dense.build(x, exact_max=1000)
    desc = dense.describe(index)
    assert desc["type"] == "IndexIVFFlat" and (desc["nlist"], desc["nprobe"]) == dense.ivf_params(5000)
    dense.save(index, tmp_path / "d.faiss")
    loaded = dense.load(tmp_path / "d.faiss")
    assert dense.describe(loaded) == desc
    hit = dense.search(loaded, x[42], 10)
    assert hit.ids[0] == 42 and len(hit.ids) == 10


def test_ivf_params_grow_with_size() -> None:
    assert dense.ivf_params(1_000_000) == (4096, 384)
    assert dense.ivf_params(100_000)[0] < 4096


def test_hubness_is_the_mean_cosine_to_the_nearest_other_rows() -> None:
    x = _unit(300, seed=3)
    near = x[0] + 0.2 * _unit(5, seed=4)
    x[1:6] = near / np.linalg.norm(near, axis=1, keepdims=True)  # rows 1-5 crowd round row 0
    exact = dense.hubness(x, k=5)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.sort(sims, axis=1)[:, -5:].mean(axis=1)
    assert np.allclose(exact, expected, atol=1e-5)  # self excluded, blocks stitched right
    assert exact[0] > 0.9 > np.median(exact)
    assert np.allclose(dense.hubness(x, k=5, block=7), exact, atol=1e-6)
    sampled = dense.hubness(x, k=5, reference=150)  # large corpora: neighbours among a sample
    assert sampled.shape == (300,) and np.all(sampled <= exact + 1e-6)  # a sample holds no nearer rows
    assert dense.hubness(x[:1]).tolist() == [0.0]
