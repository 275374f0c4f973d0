"""Incremental builds: the document diff, the embedding cache, and equivalence with a full build."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from support import counting, write_corpus

from rag.chunk import embedding_text
from rag.config import Settings
from rag.encoders import Encoder
from rag.errors import IndexInvalidError
from rag.incremental import diff_documents, embedding_keys
from rag.index import Index, build_index, current_version, load_index
from rag.retrieve import Retriever

QUESTIONS = [
    "外国人怎么激活医保电子凭证",
    "When do hospital refunds arrive?",
    "孩子可以绑定到父母的医保账户吗",
    "Where do I scan the QR code?",
]


@pytest.fixture
def small(settings: Settings, tmp_path: Path) -> Settings:
    return replace(settings, corpus_dir=write_corpus(tmp_path / "corpus"), index_dir=tmp_path / "index")


def _texts(index: Index) -> set[str]:
    return {embedding_text(p) for p in index.passages}


def _no_model() -> dict[str, Encoder]:
    raise AssertionError("the build loaded the model although nothing needed embedding")


def test_diff_documents_by_content_hash() -> None:
    changes = diff_documents({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "9", "d": "3"})
    assert (changes.added, changes.changed, changes.removed, changes.unchanged) == (["d"], ["b"], ["c"], ["a"])


def test_cache_key_covers_model_and_text() -> None:
    keys = embedding_keys("model-a\npassage: ", ["x", "y"]) + embedding_keys("model-b\npassage: ", ["x"])
    assert len(set(keys)) == 3 and all(len(k) == 64 for k in keys)


def test_first_build_adds_everything_and_a_rerun_loads_no_model(small: Settings, encoders: dict[str, Encoder]) -> None:
    first = build_index(small, encoders, progress=False)
    assert first.summary() == f"added 4, changed 0, removed 0, unchanged 0 documents; embedded {first.passages} passages"
    again = build_index(small, _no_model, progress=False)
    assert again.summary() == "added 0, changed 0, removed 0, unchanged 4 documents; embedded 0 passages"
    assert again.path != first.path and current_version(small.index_dir) == again.path
    before, after = load_index(small, first.path), load_index(small)
    assert after.passages == before.passages
    for role in before.embeddings:
        assert np.array_equal(after.embeddings[role], before.embeddings[role])
    assert before.piece_idf is not None and after.piece_idf is not None  # late interaction's idf, carried over without the model
    assert np.array_equal(after.piece_idf.ids, before.piece_idf.ids) and np.array_equal(after.piece_idf.idf, before.piece_idf.idf)


def test_add_change_delete_rename_embed_only_new_text(small: Settings, encoders: dict[str, Encoder]) -> None:
    build_index(small, encoders, progress=False)
    old = load_index(small)
    corpus = small.corpus_dir
    (corpus / "new.txt").write_text("Quokka permits\nThe quokka permit office in Lanzhou opens at 7:15 on Tuesdays.\n", encoding="utf-8")
    travel = (corpus / "travel.md").read_text(encoding="utf-8")
    (corpus / "travel.md").write_text(travel.replace("ten working days", "fifteen working days"), encoding="utf-8")
    (corpus / "pharmacy.txt").unlink()
    (corpus / "family" / "kids.txt").rename(corpus / "family" / "children.txt")

    counted = counting(encoders)
    report = build_index(small, counted, progress=False)
    c = report.changes
    assert (c.added, c.changed, c.removed, c.unchanged) == (
        ["family/children.txt", "new.txt"],
        ["travel.md"],
        ["family/kids.txt", "pharmacy.txt"],
        ["guide.txt"],
    )
    new = load_index(small)
    fresh = _texts(new) - _texts(old)
    # only the new document and the one edited passage of travel.md; not the renamed file, not the
    # untouched first section of travel.md, not guide.txt
    assert {t.splitlines()[0] for t in fresh} == {"Quokka permits", "Travel with your e-voucher > Refunds"}
    for enc in counted.values():
        assert sorted(enc.texts) == sorted(fresh)
    assert report.embedded == len(fresh) == 2
    assert report.summary() == "added 2, changed 1, removed 2, unchanged 1 documents; embedded 2 passages"

    docs = {p.doc_id for p in new.passages}
    assert docs == {"guide.txt", "travel.md", "family/children.txt", "new.txt"}
    retriever = Retriever(small, encoders, new)
    assert retriever.search("When does the quokka permit office open?", 1)[0].passage.doc_id == "new.txt"
    assert retriever.search("孩子可以绑定到父母的医保账户吗", 1)[0].passage.doc_id == "family/children.txt"
    assert "fifteen working days" in retriever.search("When do hospital refunds arrive?", 1)[0].passage.text


def test_incremental_and_full_builds_give_the_same_results(small: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> None:
    build_index(small, encoders, progress=False)
    corpus = small.corpus_dir
    guide = "医保电子凭证办理指南\n外国人可以使用护照激活医保电子凭证。\n\n二维码\n在药店出示二维码扫码支付。\n"
    (corpus / "guide.txt").write_text(guide, encoding="utf-8")
    (corpus / "pharmacy.txt").unlink()
    (corpus / "extra.md").write_text("# Where to scan\n\nScan the QR code at the pharmacy counter.\n", encoding="utf-8")
    incremental = build_index(small, encoders, progress=False)
    assert incremental.embedded < incremental.passages

    full_settings = replace(small, index_dir=tmp_path / "full-index")
    full = build_index(full_settings, encoders, progress=False, full=True)
    assert full.embedded == full.passages
    again = build_index(small, encoders, progress=False, full=True)  # --full on an existing index embeds everything too
    assert again.summary() == f"added 0, changed 0, removed 0, unchanged 4 documents; embedded {again.passages} passages"

    a, b = load_index(small, incremental.path), load_index(full_settings)
    assert a.passages == b.passages
    for role in a.embeddings:
        assert np.allclose(a.embeddings[role], b.embeddings[role], atol=1e-5)
    ra, rb = Retriever(small, encoders, a), Retriever(full_settings, encoders, b)
    for question in QUESTIONS:
        hits_a, hits_b = ra.search(question, 5), rb.search(question, 5)
        assert [h.passage for h in hits_a] == [h.passage for h in hits_b], question
        assert np.allclose([h.score for h in hits_a], [h.score for h in hits_b], atol=1e-3), question


def test_bad_utf8_file_is_named_skipped_and_indexed_once_fixed(
    small: Settings, encoders: dict[str, Encoder], capsys: pytest.CaptureFixture[str]
) -> None:
    (small.corpus_dir / "bad.txt").write_bytes("坏文件\n".encode("gbk"))
    report = build_index(small, encoders, progress=False)
    assert "skipped bad.txt: not valid UTF-8" in capsys.readouterr().err
    assert report.documents == 4 and [s[0] for s in report.skipped] == ["bad.txt"]
    assert load_index(small).manifest["skipped"].keys() == {"bad.txt"}

    (small.corpus_dir / "bad.txt").write_text("修好的文件\n现在这是合法的UTF-8文本。\n", encoding="utf-8")
    report = build_index(small, encoders, progress=False)
    assert report.changes.added == ["bad.txt"] and report.embedded == 1 and not report.skipped


def test_damaged_cache_is_not_reused_and_the_rebuild_repairs_the_index(
    small: Settings, encoders: dict[str, Encoder], capsys: pytest.CaptureFixture[str]
) -> None:
    first = build_index(small, encoders, progress=False)
    victim = first.path / "embeddings-primary.npy"
    data = bytearray(victim.read_bytes())
    data[-5] ^= 0xFF  # a flipped bit inside the vectors: numpy still loads it, the checksum does not
    victim.write_bytes(bytes(data))
    with pytest.raises(IndexInvalidError, match=r"embeddings-primary.npy does not match its checksum.*rag index"):
        load_index(small)

    counted = counting(encoders)
    report = build_index(small, counted, progress=False)
    assert "cached primary vectors" in capsys.readouterr().err
    assert len(counted["primary"].texts) == report.passages and counted["second"].texts == []
    index = load_index(small)
    assert np.allclose(np.linalg.norm(index.embeddings["primary"], axis=1), 1.0, atol=1e-4)


def test_unchanged_documents_are_not_parsed_again(small: Settings, encoders: dict[str, Encoder], monkeypatch: pytest.MonkeyPatch) -> None:
    """An incremental build takes unchanged files' parsed text from the live version's documents.jsonl."""
    import rag.ingest.corpus as corpus

    page = "<html><head><title>药店</title></head><body><h1>药店购药</h1><p>出示医保电子凭证即可结算。</p></body></html>"
    (small.corpus_dir / "pharmacy.html").write_text(page, encoding="utf-8")
    build_index(small, encoders, progress=False)
    parsed: list[str] = []
    real = corpus.parse
    monkeypatch.setattr(corpus, "parse", lambda data, fmt: parsed.append(fmt) or real(data, fmt))
    (small.corpus_dir / "pharmacy.txt").write_text("药店购药\n在定点药店扫码即可结算。\n", encoding="utf-8")
    report = build_index(small, encoders, progress=False)
    assert report.changes.changed == ["pharmacy.txt"] and parsed == ["txt"]
    index = load_index(small)
    assert index.documents["pharmacy.html"].format == "html" and "出示医保电子凭证" in index.documents["pharmacy.html"].text
    assert build_index(small, encoders, progress=False, full=True) and parsed.count("html") == 1  # --full parses everything again
