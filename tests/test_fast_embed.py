"""The int8 ONNX passage engine: close to fp32 on real passages, derived once and reused, the same
retrieval quality as an fp32 build, and never mixed with fp32 vectors in one index.

Floors, never timings (speed is bench/perf_embed.py's job). Measured on the shipped corpus: cosine
to fp32 mean 0.997, min 0.9955 (docs/performance.md, "Embedding speed"); the floors leave room.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag.chunk import chunk_document, embedding_units
from rag.config import Settings
from rag.encoders import PRIMARY, SECOND, Encoder, onnx_int8
from rag.encoders.batching import length_batches
from rag.encoders.sentence import SentenceEncoder
from rag.evaluate import evaluate, load_questions
from rag.incremental import embedding_identities
from rag.index import build_index, load_index
from rag.ingest import load_corpus
from rag.retrieve import Retriever

ROOT = Path(__file__).resolve().parent.parent
MIN_COSINE, MEAN_COSINE = 0.99, 0.995


@pytest.fixture(scope="module")
def e5(encoders: dict[str, Encoder]) -> SentenceEncoder:
    enc = encoders[PRIMARY]
    assert isinstance(enc, SentenceEncoder) and enc.passage_engine == "onnx-int8", "int8 must be the default passage engine"
    return enc


@pytest.fixture(scope="module")
def passages(settings: Settings) -> list[str]:
    docs, _ = load_corpus(settings.corpus_dir)
    return embedding_units([p for d in docs for p in chunk_document(d.id, d.text, settings.max_chars)], "passage")[0]


def test_int8_vectors_are_close_to_fp32_on_real_passages(e5: SentenceEncoder, passages: list[str]) -> None:
    texts = passages[::2][:32]  # every other passage: both documents, short and long (keeps the test short)
    fast = e5.encode_passages(texts)
    prompted = [e5.passage_prompt + t for t in texts]  # numpy fp32 equals sentence-transformers to ~1e-7
    fp32 = np.concatenate([e5._numpy.encode(prompted[i : i + 8]) for i in range(0, len(prompted), 8)])
    cos = (fast * fp32).sum(1)
    assert fast.shape == fp32.shape and fast.dtype == np.float32
    assert np.allclose(np.linalg.norm(fast, axis=1), 1, atol=1e-5)
    assert cos.min() >= MIN_COSINE and cos.mean() >= MEAN_COSINE, (cos.min(), cos.mean())


def test_a_vector_depends_on_its_text_only(e5: SentenceEncoder, passages: list[str]) -> None:
    """Activations are quantised per run, so texts run alone: an incremental build (few texts)
    and a full one (all of them) must give each passage the same vector."""
    texts = passages[:12]
    together = e5.encode_passages(texts)
    alone = np.concatenate([e5.encode_passages([t]) for t in reversed(texts)])[::-1]
    assert np.allclose(together, alone, atol=1e-6)


def test_length_batches_cover_every_row_once_longest_first() -> None:
    lengths = [5, 300, 40, 40, 512, 1, 120]
    batches = length_batches(lengths, token_budget=600, max_rows=3)
    flat = np.concatenate(batches).tolist()
    assert sorted(flat) == list(range(len(lengths))) and [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert all(len(b) * lengths[b[0]] <= 600 or len(b) == 1 for b in batches)


def test_derived_model_is_cached_and_reused(e5: SentenceEncoder, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    source = Path(e5.path)
    first = onnx_int8.ensure_int8(source, settings.cache_dir)
    assert first.parent.parent == source.parent  # beside the converted folder, keyed by its hash
    info = json.loads((first.parent / onnx_int8.INFO_FILE).read_text(encoding="utf-8"))
    assert info["derive_version"] == onnx_int8.DERIVE_VERSION and info["min_check_cosine"] >= onnx_int8.MIN_CHECK_COSINE
    mtime = first.stat().st_mtime_ns

    def no_derive(*_: object) -> None:
        raise AssertionError("derived again although the copy is current")

    def no_hashing(*_: object) -> str:
        raise AssertionError("the unchanged folder was hashed again")

    monkeypatch.setattr(onnx_int8, "derive", no_derive)
    monkeypatch.setattr(onnx_int8, "file_sha256", no_hashing)  # the stamp answers for an unchanged folder
    assert onnx_int8.ensure_int8(source, settings.cache_dir) == first and first.stat().st_mtime_ns == mtime


def test_folder_hash_follows_content(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    before = onnx_int8.folder_sha256(folder, tmp_path)
    assert onnx_int8.folder_sha256(folder, tmp_path) == before
    (folder / "config.json").write_text('{"changed": 1}')
    assert onnx_int8.folder_sha256(folder, tmp_path) != before


def test_engine_is_part_of_the_cache_key(settings: Settings) -> None:
    fp32, int8 = (embedding_identities(replace(settings, passage_engine=e)) for e in ("sentence-transformers", "onnx-int8"))
    assert fp32[PRIMARY] != int8[PRIMARY] and fp32[SECOND] == int8[SECOND]
    assert fp32[PRIMARY] == f"{settings.model}\n{settings.passage_prompt}"  # fp32 keeps the key of indexes built before engines


@pytest.mark.slow
def test_switching_engine_re_embeds_and_keeps_quality(
    settings: Settings, encoders: dict[str, Encoder], retriever: Retriever, tmp_path: Path
) -> None:
    """An int8 index rebuilt incrementally with the fp32 engine re-embeds every passage (USE
    sentences are reused); its recall@5 on the own questions is within 0.01 of the int8 build's."""
    int8 = replace(settings, index_dir=tmp_path / "index")
    first = build_index(int8, encoders, progress=False)
    fp32_settings = replace(int8, passage_engine="sentence-transformers")
    fp32_e5 = SentenceEncoder.from_settings(fp32_settings, progress=False)
    assert fp32_e5.passage_engine == "sentence-transformers"
    second = build_index(fp32_settings, {PRIMARY: fp32_e5, SECOND: encoders[SECOND]}, progress=False)
    assert second.embedded == first.passages, "a changed engine must re-embed every passage"
    before, after = load_index(int8, first.path), load_index(fp32_settings)
    assert np.array_equal(before.embeddings[SECOND], after.embeddings[SECOND])  # untouched role: reused
    reference = fp32_e5._numpy.encode([fp32_e5.passage_prompt + t for t in embedding_units(after.passages, "passage")[0]])
    assert (after.embeddings[PRIMARY] * reference).sum(1).min() > 0.9999  # all fp32, no int8 row left behind
    assert (before.embeddings[PRIMARY] * reference).sum(1).min() < 0.9999

    questions = load_questions(ROOT / "tests" / "data" / "questions.jsonl")
    fast = evaluate(retriever, questions)["overall"]  # the session's index: shipped corpus, default (int8) engine
    slow = evaluate(Retriever(fp32_settings, {PRIMARY: fp32_e5, SECOND: encoders[SECOND]}, after), questions)["overall"]
    assert fast["recall@5"] >= slow["recall@5"] - 0.01, (fast, slow)
    assert abs(fast["mrr@10"] - slow["mrr@10"]) <= 0.02, (fast, slow)
