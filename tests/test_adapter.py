"""The English query adapter: its file format, its merge into the numpy model, and where it applies."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.encoders import PRIMARY, SECOND, Encoder, adapter
from rag.encoders.sentence import SentenceEncoder
from rag.encoders.use import USEEncoder
from rag.errors import RagError


def _write(path: Path, factors: dict[str, tuple[np.ndarray, np.ndarray]], second: np.ndarray | None = None, **meta: object) -> Path:
    adapter.save(path, factors, {"version": "test", "base": "b", "scale": 1.0} | meta, second)
    return path


def test_round_trip_multiplies_the_factors_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    loaded = adapter.load(_write(tmp_path / "a.npz", {"w": (a, b)}, scale=0.5))
    assert loaded.version == "test" and loaded.base == "b"
    expected = 0.5 * b.astype(np.float16).astype(np.float32) @ a.astype(np.float16).astype(np.float32)
    assert np.allclose(loaded.deltas["w"], expected, atol=1e-6)
    merged = adapter.apply({"w": np.ones((5, 6), np.float32), "other": np.zeros(3, np.float32)}, loaded)
    assert np.allclose(merged["w"], 1 + expected, atol=1e-6) and merged["other"].shape == (3,)
    with pytest.raises(RagError, match=r"RAG_QUERY_ADAPTER.*updates w"):
        adapter.apply({"w": np.ones((6, 5), np.float32)}, loaded)


def test_second_map_round_trip_and_scale(tmp_path: Path) -> None:
    m = np.random.default_rng(1).normal(size=(4, 4)).astype(np.float32)
    loaded = adapter.load(_write(tmp_path / "m.npz", {}, second=m, second_scale=0.5))
    assert loaded.second is not None and np.allclose(loaded.second, 0.5 * m.astype(np.float16).astype(np.float32), atol=1e-6)
    assert adapter.load(_write(tmp_path / "none.npz", {})).second is None, "a v1 file has no map, and USE stays as it is"
    v = np.eye(4, dtype=np.float32)[:2]
    out, moved = adapter.mapped(v, loaded.second), v + v @ loaded.second
    assert np.allclose(np.linalg.norm(out, axis=1), 1) and np.allclose(out, moved / np.linalg.norm(moved, axis=1, keepdims=True))


def test_damaged_files_are_one_clear_error(tmp_path: Path) -> None:
    good = (np.ones((2, 3), np.float32), np.ones((4, 2), np.float32))
    (tmp_path / "text.npz").write_text("not a zip")
    with zipfile.ZipFile(tmp_path / "empty.npz", "w"):
        pass
    np.savez(tmp_path / "kind.npz", meta=np.array(json.dumps({"kind": "trees"})))
    cases = {
        tmp_path / "missing.npz": "cannot read",
        tmp_path / "text.npz": "cannot read",
        tmp_path / "empty.npz": "cannot read",
        tmp_path / "kind.npz": "not a query adapter",
        _write(tmp_path / "rank.npz", {"w": (good[0], np.ones((4, 3), np.float32))}): "matching rank",
        _write(tmp_path / "nan.npz", {"w": (good[0] * np.nan, good[1])}): "non-finite",
        _write(tmp_path / "map.npz", {"w": good}, second=np.ones((3, 4), np.float32)): "second.map must be a square",
    }
    for path, message in cases.items():
        with pytest.raises(RagError, match=f"RAG_QUERY_ADAPTER.*{message}"):
            adapter.load(path)


def test_settings_choose_the_file() -> None:
    assert Settings().query_adapter_file() == adapter.FILE and adapter.FILE.is_file()
    assert Settings(query_adapter="").query_adapter_file() is None
    assert Settings(model="/some/other/model").query_adapter_file() is None, "the bundled file is for the bundled e5 only"
    assert Settings(query_adapter="~/a.npz").query_adapter_file() == Path.home() / "a.npz"


def test_only_english_questions_change(encoders: dict[str, Encoder]) -> None:
    e5 = encoders[PRIMARY]
    assert isinstance(e5, SentenceEncoder) and e5.adapter.startswith("query-adapter-en")
    chinese, english = "外国人怎么激活医保电子凭证", "How do foreigners activate the medical insurance e-voucher?"
    mixed = e5.encode_queries([english, chinese, english])
    assert np.allclose(mixed[1], e5._plain_queries([chinese])[0], atol=1e-6), "a Chinese question keeps the model's own vector"
    assert np.allclose(mixed[0], mixed[2]) and np.allclose(mixed[0], e5.encode_queries([english])[0], atol=1e-5)
    plain = e5._plain_queries([english])[0]
    assert 0.5 < float(mixed[0] @ plain) < 0.999, "the adapter moves an English question, but not far"
    assert abs(float(np.linalg.norm(mixed[0])) - 1) < 1e-5


def test_merged_numpy_model_equals_torch_with_the_same_updates(encoders: dict[str, Encoder]) -> None:
    """The merge adds each update to the weight it names: checked against sentence-transformers' own forward pass."""
    import torch

    e5 = encoders[PRIMARY]
    assert isinstance(e5, SentenceEncoder)
    loaded = adapter.load(adapter.FILE)
    texts = ["Can I add my mum to my family account?", "How long does approval take?", "x"]
    model = e5.model
    params = dict(model[0].auto_model.named_parameters())
    saved = {name: params[name].detach().clone() for name in loaded.deltas}
    try:
        with torch.no_grad():
            for name, delta in loaded.deltas.items():
                params[name] += torch.from_numpy(delta)
        reference = model.encode([e5.query_prompt + t for t in texts], normalize_embeddings=True, convert_to_numpy=True)
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)
    cosines = (e5.encode_queries(texts) * reference).sum(axis=1)
    assert cosines.min() >= 0.99999, cosines


def test_adapter_for_another_model_is_refused(settings: Settings, tmp_path: Path) -> None:
    with np.load(adapter.FILE) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["meta"] = np.array(json.dumps(json.loads(str(arrays["meta"])) | {"base": "0123456789abcdef"}))
    np.savez(tmp_path / "other.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(RagError, match="trained on model 0123456789ab"):
        SentenceEncoder.from_settings(dataclasses.replace(settings, query_adapter=str(tmp_path / "other.npz")), progress=False)


def test_use_maps_english_questions_only(encoders: dict[str, Encoder]) -> None:
    use = encoders[SECOND]
    assert isinstance(use, USEEncoder) and use.english_map is not None and use.adapter.startswith("query-adapter-en")
    chinese, english = "外国人怎么激活医保电子凭证", "How do foreigners activate the medical insurance e-voucher?"
    mixed = use.encode_queries([english, chinese])
    plain = use._encode([english, chinese])
    assert np.allclose(mixed[1], plain[1], atol=1e-6), "a Chinese question keeps USE's own vector"
    assert np.allclose(mixed[0], adapter.mapped(plain[:1], use.english_map)[0], atol=1e-6)
    assert 0.5 < float(mixed[0] @ plain[0]) < 0.999 and abs(float(np.linalg.norm(mixed[0])) - 1) < 1e-5
    assert np.allclose(use.encode_passages([english]), plain[:1], atol=1e-6), "passages never go through the map"
    with pytest.raises(RagError, match=r"RAG_QUERY_ADAPTER.*USE needs \(512, 512\)"):
        USEEncoder(query_adapter=adapter.Adapter("test", "b", {}, np.zeros((4, 4), np.float32)))
