"""Index build, manifest checks, atomic switch and clear errors for broken indexes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag import dense
from rag.confidence import load_model
from rag.config import Settings
from rag.encoders import Encoder
from rag.errors import CorpusError, IndexInvalidError, IndexMissingError, RagError
from rag.fusion import Ranking
from rag.index import FORMAT_VERSION, build_index, current_version, load_index
from rag.retrieve import Retriever


def test_manifest_says_how_the_index_was_built(retriever: Retriever, settings: Settings) -> None:
    manifest = retriever.index.manifest
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["model"] == {"name": settings.model, "dim": 384}
    assert manifest["encoders"] == {"primary": {"name": settings.model, "dim": 384}, "second": {"name": "use-multilingual", "dim": 512}}
    assert set(manifest["corpus"]["files"]) == {"foreigner-e-voucher.txt", "family-e-medical-card.txt"}
    assert all(len(h) == 64 for h in manifest["corpus"]["files"].values())
    assert manifest["confidence"]["version"] == load_model().version and len(manifest["confidence"]["sha256"]) == 64
    assert manifest["passages"] == len(retriever.index.passages) == retriever.index.store.rows("primary")
    assert {"faiss-cpu", "jieba", "sentence-transformers", "python"} <= set(manifest["versions"])


def test_every_indexed_passage_is_an_exact_citation(retriever: Retriever, settings: Settings) -> None:
    texts = {p.name: p.read_bytes().decode("utf-8") for p in settings.corpus_dir.glob("*.txt")}
    for p in retriever.index.passages:
        assert texts[p.doc_id][p.start : p.end] == p.text


def test_second_encoder_embeds_sentences_owned_by_passages(retriever: Retriever) -> None:
    index = retriever.index
    assert index.manifest["chunking"]["units"] == {"primary": "passage", "second": "sentence"}
    assert np.array_equal(index.owners["primary"], np.arange(len(index.passages)))
    owners = index.owners["second"]
    assert len(owners) == len(index.embeddings["second"]) == index.store.rows("second") > len(index.passages)
    assert set(owners.tolist()) == set(range(len(index.passages)))
    assert index.manifest["hubness"] == {"second": {"k": 5, "reference": len(owners)}}
    assert index.hubness["second"].shape == owners.shape and index.hubness["second"].dtype == np.float32


def test_hub_penalty_applies_to_english_questions_only(retriever: Retriever) -> None:
    settings = retriever.settings
    assert settings.hub_penalty("en") > 0 and settings.hub_penalty("zh") == 0
    index, question = retriever.index, "Can a foreigner activate it through Alipay?"
    vector = retriever.query_vectors(question)["second"]
    plain = retriever.dense_ranking(index, "second", vector)
    corrected = retriever.dense_ranking(index, "second", vector, hub_penalty=0.25)
    assert set(plain.ids.tolist()) == set(corrected.ids.tolist())
    best = int(corrected.ids[0])
    rows = np.flatnonzero(index.owners["second"] == best)
    expected = (index.embeddings["second"][rows] @ vector - 0.25 * index.hubness["second"][rows]).max()
    assert corrected.scores[0] == pytest.approx(expected, abs=1e-5)


def test_best_per_passage_keeps_each_passages_best_unit() -> None:
    owners = np.array([0, 0, 1, 2, 2, 2])
    hits = Ranking(np.array([4, 1, 0, 3, 2]), np.array([0.9, 0.8, 0.7, 0.6, 0.5], dtype=np.float32))
    best = dense.best_per_passage(hits, owners, k=10)
    assert best.ids.tolist() == [2, 0, 1] and best.scores.tolist() == pytest.approx([0.9, 0.8, 0.5])
    assert dense.best_per_passage(hits, owners, k=1).ids.tolist() == [2]


def test_index_with_other_units_or_prompt_is_refused(settings: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> None:
    s = replace(settings, corpus_dir=_small_corpus(tmp_path), index_dir=tmp_path / "index")
    build_index(s, encoders, progress=False)
    with pytest.raises(IndexInvalidError, match=r"chunking.*rag index"):
        load_index(replace(s, second_units="passage"))
    with pytest.raises(IndexInvalidError, match=r"RAG_PASSAGE_PROMPT.*rag index"):
        load_index(replace(s, passage_prompt="document: "))
    with pytest.raises(RagError, match="RAG_SECOND_UNITS"):
        load_index(replace(s, second_units="paragraph"))


def test_vectors_are_normalised(retriever: Retriever) -> None:
    for matrix in retriever.index.embeddings.values():
        assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-4)


def _copy_settings(settings: Settings, tmp_path: Path) -> Settings:
    return replace(settings, index_dir=tmp_path / "index")


def _small_corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.txt").write_text("办理指南\n外国人可以用护照办理医保电子凭证。\n", encoding="utf-8")
    (corpus / "sub" / "b.md").write_text("# Guide\n\nThe e-voucher shows a QR code at the pharmacy.\n", encoding="utf-8")
    (corpus / "bad.txt").write_bytes(b"\xff\xfe not utf-8 \x80")
    (corpus / "broken.pdf").write_bytes(b"%PDF")  # a PDF cut short: skipped with its reason
    (corpus / "ignored.xyz").write_bytes(b"not a format we read")
    return corpus


def test_small_corpus_reads_txt_and_md_recursively_and_skips_bad_files(
    settings: Settings, encoders: dict[str, Encoder], tmp_path: Path
) -> None:
    s = replace(settings, corpus_dir=_small_corpus(tmp_path), index_dir=tmp_path / "index")
    report = build_index(s, encoders, progress=False)
    assert report.documents == 2
    skipped = dict(report.skipped)
    assert sorted(skipped) == ["bad.txt", "broken.pdf"] and "UTF-8" in skipped["bad.txt"] and "PDF" in skipped["broken.pdf"]
    index = load_index(s)
    assert {p.doc_id for p in index.passages} == {"a.txt", "sub/b.md"}
    hits = Retriever(s, encoders, index).search("QR code pharmacy", 1)
    assert hits[0].passage.doc_id == "sub/b.md"


def test_missing_index_says_to_run_rag_index(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(IndexMissingError, match="rag index"):
        load_index(_copy_settings(settings, tmp_path))


def test_index_from_another_model_is_refused(settings: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> None:
    s = replace(settings, corpus_dir=_small_corpus(tmp_path), index_dir=tmp_path / "index")
    build_index(s, encoders, progress=False)
    with pytest.raises(IndexInvalidError, match=r"other-model.*rag index"):
        load_index(replace(s, model="other-model"))


@pytest.mark.parametrize(
    "victim",
    ["dense-primary.faiss", "dense-second.faiss", "manifest.json", "passages.jsonl", "embeddings-primary.npy", "owners-second.npy"],
)
def test_corrupt_file_gives_a_clear_error(settings: Settings, encoders: dict[str, Encoder], tmp_path: Path, victim: str) -> None:
    s = replace(settings, corpus_dir=_small_corpus(tmp_path), index_dir=tmp_path / "index")
    build_index(s, encoders, progress=False)
    path = current_version(s.index_dir)
    assert path is not None
    (path / victim).write_bytes(b"garbage")
    with pytest.raises(IndexInvalidError, match="rag index"):
        load_index(s)


def test_wrong_format_version_is_refused(settings: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> None:
    s = replace(settings, corpus_dir=_small_corpus(tmp_path), index_dir=tmp_path / "index")
    build_index(s, encoders, progress=False)
    path = current_version(s.index_dir)
    assert path is not None
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 999
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexInvalidError, match="format"):
        load_index(s)


class ExplodingEncoder:
    """A real encoder that fails half-way, to prove a failed build leaves the old index live."""

    def __init__(self, inner: Encoder):
        self.inner, self.name, self.dim = inner, inner.name, inner.dim

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        raise RuntimeError("disk on fire")


def test_failed_rebuild_keeps_the_last_good_index(settings: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> None:
    s = replace(settings, corpus_dir=_small_corpus(tmp_path), index_dir=tmp_path / "index")
    build_index(s, encoders, progress=False)
    before = current_version(s.index_dir)
    (s.corpus_dir / "c.txt").write_text("新文档。\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="disk on fire"):
        build_index(s, encoders | {"primary": ExplodingEncoder(encoders["primary"])}, progress=False)
    assert current_version(s.index_dir) == before
    assert len(load_index(s).passages) == 2
    assert not list(s.index_dir.glob(".tmp-*"))


def test_rebuild_switches_version_and_keeps_one_previous(settings: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> None:
    s = replace(settings, corpus_dir=_small_corpus(tmp_path), index_dir=tmp_path / "index")
    for _ in range(3):
        build_index(s, encoders, progress=False)
    versions = sorted(p.name for p in s.index_dir.iterdir() if p.is_dir() and p.name.startswith("v"))
    assert len(versions) == 2
    assert current_version(s.index_dir) == s.index_dir / versions[-1]


def test_empty_corpus_is_a_clear_error(settings: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no readable"):
        build_index(replace(settings, corpus_dir=tmp_path / "empty", index_dir=tmp_path / "index"), encoders, progress=False)
    with pytest.raises(CorpusError, match="does not exist"):
        build_index(replace(settings, corpus_dir=tmp_path / "nope", index_dir=tmp_path / "index"), encoders, progress=False)
    (tmp_path / "a-file.txt").write_text("医保", encoding="utf-8")
    with pytest.raises(CorpusError, match="is a file, not a folder"):
        build_index(replace(settings, corpus_dir=tmp_path / "a-file.txt", index_dir=tmp_path / "index"), encoders, progress=False)
