"""The numpy query path must give sentence-transformers' vectors; start-up caches must never serve stale data."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.encoders import PRIMARY, Encoder, bert_numpy
from rag.encoders.sentence import SentenceEncoder
from rag.errors import RagError
from rag.expand import _build_pinyin_readings, _build_reverse_cedict, expand_english, pinyin_readings, reverse_cedict
from rag.startup_cache import cached

QUESTIONS = Path(__file__).resolve().parent / "data" / "questions.jsonl"


def _questions() -> list[str]:
    with open(QUESTIONS, encoding="utf-8") as f:
        return [json.loads(line)["question"] for line in f if line.strip()]


def test_numpy_queries_equal_sentence_transformers(encoders: dict[str, Encoder]) -> None:
    e5 = encoders[PRIMARY]
    assert isinstance(e5, SentenceEncoder) and e5._numpy is not None, "the bundled e5 must take the numpy path"
    texts = [*_questions(), "", "x", "医保" * 400]  # empty, one letter, truncated at 512 tokens
    fast = np.vstack([e5._plain_queries([t]) for t in texts])  # English through the adapter: tests/test_adapter.py
    prompted = [e5.query_prompt + t for t in texts]
    reference = e5.model.encode(prompted, normalize_embeddings=True, convert_to_numpy=True)
    cosines = (fast * reference).sum(axis=1)
    assert fast.dtype == np.float32 and fast.shape == reference.shape
    assert cosines.min() >= 0.99999, f"worst: {texts[int(cosines.argmin())]!r} cos {cosines.min():.6f}"
    # A padded batch must give each text the vector it gets alone.
    batch = e5._plain_queries(texts[:20])
    assert np.abs(batch - fast[:20]).max() < 1e-5


def test_numpy_path_refuses_folders_it_cannot_reproduce(encoders: dict[str, Encoder], tmp_path: Path) -> None:
    e5 = encoders[PRIMARY]
    assert isinstance(e5, SentenceEncoder)
    folder = Path(e5.path)
    assert bert_numpy.supports(folder)
    copy = tmp_path / "cls-pooling"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("model.safetensors"))
    assert not bert_numpy.supports(copy), "no weights file"
    (copy / "model.safetensors").symlink_to(folder / "model.safetensors")
    assert bert_numpy.supports(copy)
    pooling = copy / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text()) | {"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}
    pooling.write_text(json.dumps(config))
    assert not bert_numpy.supports(copy), "CLS pooling is not what the numpy path computes"


def test_unknown_query_engine_is_a_clear_error() -> None:
    with pytest.raises(RagError, match="RAG_QUERY_ENGINE"):
        SentenceEncoder("m", "/nowhere", "query: ", "passage: ", query_engine="onnx")


def test_cached_builds_once_then_reads(tmp_path: Path) -> None:
    calls = []

    def build() -> dict[str, int]:
        calls.append(1)
        return {"a": len(calls)}

    assert cached(tmp_path, "thing", "k1", build) == {"a": 1}
    assert cached(tmp_path, "thing", "k1", build) == {"a": 1} and len(calls) == 1
    # A new key (new library version or code) builds again and removes the stale file.
    assert cached(tmp_path, "thing", "k2", build) == {"a": 2}
    assert [p.name for p in (tmp_path / "startup").iterdir()] == ["thing-k2.pickle"]
    # A truncated file is rebuilt, not trusted.
    (tmp_path / "startup" / "thing-k2.pickle").write_bytes(pickle.dumps({"a": 9})[:5])
    assert cached(tmp_path, "thing", "k2", build) == {"a": 3}


def test_cached_reverse_dictionary_equals_a_fresh_build(settings: Settings) -> None:
    table = reverse_cedict(settings.cache_dir)
    files = list((settings.cache_dir / "startup").glob("cedict-reverse-*.pickle"))
    assert len(files) == 1
    with open(files[0], "rb") as f:
        assert pickle.load(f) == _build_reverse_cedict() == table
    readings = pinyin_readings(settings.cache_dir)
    files = list((settings.cache_dir / "startup").glob("cedict-pinyin-*.pickle"))
    assert len(files) == 1
    with open(files[0], "rb") as f:
        assert pickle.load(f) == _build_pinyin_readings() == readings
    assert readings["shenyang"].split("|")[0] == "沈阳"
    assert "支付宝" in expand_english("Can a foreigner activate it through Alipay?")


def test_question_token_counts_are_exact_without_a_second_tokenizer(encoders: dict[str, Encoder]) -> None:
    """Counting reuses the query tokenizer (no 0.9 s copy) unless it truncated; either way the count is exact."""
    from tokenizers import Tokenizer

    e5 = encoders[PRIMARY]
    assert isinstance(e5, SentenceEncoder) and e5._numpy is not None
    untruncated = Tokenizer.from_str(e5._numpy.tokenizer.to_str())
    untruncated.no_truncation()
    for text in ["", "医保", "How do I bind my passport?", "外国人如何激活医保电子凭证" * 40, "医保" * 400]:
        assert e5.count_tokens(text) == len(untruncated.encode(e5.query_prompt + text).ids), text[:20]
    assert e5.count_tokens("医保" * 400) > 512  # past the query tokenizer's truncation, still counted whole
