"""Late interaction (rag/late.py): MaxSim, the token rows an index keeps, and how a search uses them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from support import counting, write_corpus

from rag import late
from rag.config import Settings
from rag.encoders import PRIMARY, TOKENS, Encoder
from rag.errors import IndexInvalidError
from rag.index import build_index, current_version, load_index
from rag.late import TOKEN_OFFSETS
from rag.late import TOKENS as TOKENS_FILE
from rag.retrieve import Retriever


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_maxsim_is_the_mean_of_each_question_tokens_best_match() -> None:
    rng = np.random.default_rng(0)
    rows = [_unit(rng.normal(size=(n, 8))).astype(np.float16) for n in (3, 0, 5, 1)]  # passage 1 has no token rows
    matrix, offsets = late.pack(rows, 8)
    assert [len(r) for r in late.unpack(matrix, offsets)] == [3, 0, 5, 1]
    query = _unit(rng.normal(size=(4, 8))).astype(np.float32)
    ranking = late.maxsim(query, matrix, offsets, np.array([3, 1, 0, 2]))
    expected = {i: float((query @ rows[i].astype(np.float32).T).max(1).mean()) for i in (0, 2, 3)}
    assert sorted(ranking.ids.tolist()) == [0, 2, 3]  # a passage without rows is no candidate
    assert ranking.ids.tolist() == sorted(expected, key=lambda i: -expected[i])
    assert np.allclose(ranking.scores, [expected[i] for i in ranking.ids.tolist()], atol=1e-5)
    assert late.maxsim(query[:0], matrix, offsets, np.array([0])).ids.size == 0
    assert late.maxsim(query, matrix, offsets, np.array([1])).ids.size == 0


def test_token_rows_are_the_texts_own_words_projected(encoders: dict[str, Encoder]) -> None:
    e5 = encoders[PRIMARY]
    projection = e5.projection  # type: ignore[attr-defined]
    assert projection.version == "token-pca128-v1" and projection.dim == 128
    tokenizer = e5._numpy.tokenizer  # type: ignore[attr-defined]
    text = "外国人怎么激活医保电子凭证"
    words = [t for t in tokenizer.encode(text, add_special_tokens=False).tokens if t != "▁"]
    vectors, rows = e5.passage_tokens([text])  # type: ignore[attr-defined]
    assert np.allclose(vectors, e5.encode_passages([text]), atol=1e-6)  # the same run gives both
    assert rows[0].shape == (len(words), 128) and rows[0].dtype == np.float16
    assert np.allclose(np.linalg.norm(rows[0].astype(np.float32), axis=1), 1, atol=1e-2)
    q_vectors, q_rows = e5.queries_with_tokens([text, "How do I activate the e-voucher?"])  # type: ignore[attr-defined]
    assert np.allclose(q_vectors, e5.encode_queries([text, "How do I activate the e-voucher?"]), atol=1e-6)
    assert len(q_rows[0]) == len(words)  # "query:" is not matched
    # An English question's rows are centred on the English questions' mean, a Chinese one's on the passages'.
    assert projection.english_mean is not None and projection.english_mean.shape == projection.mean.shape
    english = "How do I activate the e-voucher?"
    adapted = e5._english  # type: ignore[attr-defined]
    for centred, mean in ((True, projection.english_mean), (False, projection.mean)):
        rows_of = late.token_rows(projection._replace(mean=mean, english_mean=None), late.skipped_ids(tokenizer), 3)
        _, states = adapted.encode_with_states([e5.query_prompt + english], rows_of)  # type: ignore[attr-defined]
        assert np.allclose(states[0].astype(np.float32), q_rows[1].astype(np.float32), atol=1e-3) == centred
    # A question's tokens find the same words in a passage that holds them, better than in one that does not.
    _, passages = e5.passage_tokens(["外国人可以用护照激活医保电子凭证。", "药店扫码支付时出示二维码。"])  # type: ignore[attr-defined]
    matrix, offsets = late.pack(passages, 128)
    assert late.maxsim(q_rows[0].astype(np.float32), matrix, offsets, np.array([0, 1])).ids.tolist() == [0, 1]


@pytest.fixture
def small(settings: Settings, tmp_path: Path) -> Settings:
    return replace(settings, corpus_dir=write_corpus(tmp_path / "corpus"), index_dir=tmp_path / "index")


def test_build_keeps_token_rows_and_an_incremental_build_reuses_them(small: Settings, encoders: dict[str, Encoder]) -> None:
    first = build_index(small, encoders, progress=False)
    before = load_index(small)
    assert before.late is not None and before.manifest["late"]["projection"] == "token-pca128-v1"
    matrix, offsets = before.late
    assert len(offsets) == len(before.passages) + 1 and offsets[-1] == len(matrix) == before.manifest["late"]["tokens"]
    (small.corpus_dir / "new.txt").write_text("Quokka permits\nThe quokka permit office in Lanzhou opens at 7:15.\n", encoding="utf-8")
    counted = counting(encoders)
    again = build_index(small, counted, progress=False)
    assert again.embedded == 1 and counted[PRIMARY].texts and len(counted[PRIMARY].texts) == 1
    after = load_index(small)
    assert after.late is not None and first.path != again.path
    old_rows = {p: r for p, r in zip(before.passages, late.unpack(*before.late), strict=True)}
    for passage, rows in zip(after.passages, late.unpack(*after.late), strict=True):
        if passage in old_rows:
            assert np.array_equal(rows, old_rows[passage])  # reused, not recomputed
    # Each passage's rows are what the encoder gives for its text alone (the int8 engine runs each text alone).
    from rag.chunk import embedding_text

    fresh = encoders[PRIMARY].passage_tokens([embedding_text(p) for p in after.passages])[1]  # type: ignore[attr-defined]
    assert all(np.array_equal(a, b) for a, b in zip(fresh, late.unpack(*after.late), strict=True))
    # The idf counts are over the new set of passages, not carried over from the old one.
    counts = late.piece_counts(encoders[PRIMARY], [embedding_text(p) for p in after.passages])
    assert after.piece_idf is not None and before.piece_idf is not None and counts is not None
    assert np.array_equal(after.piece_idf.ids, counts[0]) and not np.array_equal(after.piece_idf.ids, before.piece_idf.ids)


def test_an_index_without_token_rows_searches_and_the_next_build_adds_them(small: Settings, encoders: dict[str, Encoder]) -> None:
    off = replace(small, late_tokens=False)
    build_index(off, encoders, progress=False)
    plain = load_index(off)
    assert plain.late is None and plain.manifest["late"] is None
    assert not (current_version(small.index_dir) / TOKENS_FILE).exists()  # type: ignore[operator]
    retriever = Retriever(small, encoders, plain)
    assert not retriever.wants_tokens(plain, "zh")
    assert retriever.search("孩子可以绑定到父母的医保账户吗", 1)[0].passage.doc_id == "family/kids.txt"
    report = build_index(small, encoders, progress=False)
    assert report.embedded == report.passages  # every passage needed its token rows
    assert load_index(small).late is not None


def test_token_rows_that_do_not_match_the_passages_are_one_clear_error(small: Settings, encoders: dict[str, Encoder]) -> None:
    build_index(small, encoders, progress=False)
    version = current_version(small.index_dir)
    assert version is not None
    offsets = np.load(version / TOKEN_OFFSETS)
    np.save(version / TOKEN_OFFSETS, offsets[:-1])
    manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
    import hashlib

    manifest["files"][TOKEN_OFFSETS] = hashlib.sha256((version / TOKEN_OFFSETS).read_bytes()).hexdigest()  # past the checksum
    (version / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexInvalidError, match="token rows do not match its"):
        load_index(small)


def test_late_interaction_reorders_the_fused_top_only_when_weighted(retriever: Retriever) -> None:
    index, question = retriever.index, "外国人可以用哪些证件激活医保电子凭证？"
    vectors = retriever.query_vectors(question, tokens=True)
    assert TOKENS in vectors and vectors[TOKENS].shape[1] == 128
    rankings = retriever.rankings(question, index, vectors=vectors)
    weights = retriever.settings.weights("zh")
    fused = retriever.fuse(rankings, weights)
    ranked = retriever.late_fused(index, "zh", rankings, weights, fused, vectors)
    scored = late.maxsim(vectors[TOKENS], *index.late, fused.ids[: retriever.settings.late_depth])  # type: ignore[misc]
    assert np.array_equal(ranked.ids, retriever.fuse([*rankings, scored], [*weights, retriever.settings.late_weight("zh")]).ids)
    off = Retriever(replace(retriever.settings, late_weight_zh=0.0), retriever.encoders, index)
    assert retriever.wants_tokens(index, "zh") and not off.wants_tokens(index, "zh")
    assert off.late_fused(index, "zh", rankings, weights, fused, vectors) is fused
    assert [h.passage for h in off.search(question, 5)] == [index.passages[i] for i in fused.ids[:5].tolist()]


def test_idf_weights_favour_the_pieces_few_passages_hold() -> None:
    counts = np.array([[5, 9, 12], [4, 1, 2]])  # piece 5 in all 4 passages, 9 in one, 12 in two
    idf = late.piece_idf(counts, 4)
    weights = idf.weights([5, 9, 7, 12])  # 7: in no passage
    assert np.isclose(weights.sum(), 1.0) and weights.dtype == np.float32
    assert weights[2] > weights[1] > weights[3] > weights[0] > 0  # unseen > rare > commoner > everywhere
    assert np.isclose(weights[0] / weights[1], np.log1p(0.5 / 4.5) / np.log1p(3.5 / 1.5))  # BM25's idf ratio
    assert np.allclose(late.piece_idf(np.zeros((2, 0), dtype=np.int64), 0).weights([1, 2]), [0.5, 0.5])  # nothing counted
    rows = [_unit(np.eye(3, 8)[[0, 1]]), _unit(np.eye(3, 8)[[2]])]  # passage 0 holds tokens a, b; passage 1 holds c
    matrix, offsets = late.pack(rows, 8)
    query = np.eye(3, 8, dtype=np.float32)  # a, b, c
    assert late.maxsim(query, matrix, offsets, np.array([0, 1])).ids.tolist() == [0, 1]  # two of three tokens
    assert late.maxsim(query, matrix, offsets, np.array([0, 1]), np.array([0.1, 0.1, 0.8])).ids.tolist() == [1, 0]  # c weighs most
    assert late.maxsim(query, matrix, offsets, np.array([0, 1]), np.array([0.5, 0.5])).ids.tolist() == [0, 1]  # wrong length: the mean


def test_piece_counts_count_passages_not_occurrences(encoders: dict[str, Encoder]) -> None:
    e5 = encoders[PRIMARY]
    texts = ["医保医保医保", "医保电子凭证", "护照", "", "医保"]
    counts = late.piece_counts(e5, texts)
    assert counts is not None and np.array_equal(counts, late.piece_counts(e5, texts, batch=2))  # batches merge exactly
    pieces = e5.token_pieces(texts, query=False)  # type: ignore[attr-defined]
    held = {int(i): int(n) for i, n in zip(*counts, strict=True)}
    for piece in {p for ps in pieces for p in ps}:
        assert held[piece] == sum(piece in ps for ps in pieces)
    assert late.piece_counts(object(), texts) is None  # an encoder that cannot say its pieces


QUESTIONS = ["外国人可以用哪些证件激活医保电子凭证？", "How do I activate the e-voucher?", "亲情账户 how many people", "🙂", "a" * 3000]


@pytest.mark.parametrize("question", QUESTIONS)
def test_a_questions_pieces_line_up_with_its_token_rows(encoders: dict[str, Encoder], question: str) -> None:
    e5 = encoders[PRIMARY]
    _, rows = e5.queries_with_tokens([question])  # type: ignore[attr-defined]
    assert len(e5.token_pieces([question])[0]) == len(rows[0])  # type: ignore[attr-defined]


def test_a_build_counts_pieces_and_a_search_weighs_question_tokens_by_idf(small: Settings, encoders: dict[str, Encoder]) -> None:
    from rag.chunk import embedding_text

    build_index(small, encoders, progress=False)
    index = load_index(small)
    assert index.piece_idf is not None and index.manifest["late"]["idf"]["passages"] == len(index.passages)
    expected = late.piece_counts(encoders[PRIMARY], [embedding_text(p) for p in index.passages])
    assert expected is not None and np.array_equal(index.piece_idf.ids, expected[0])
    retriever = Retriever(small, encoders, index)
    question = "孩子可以绑定到父母的医保账户吗"
    vectors = retriever.query_vectors(question, tokens=True)
    rankings = retriever.rankings(question, index, vectors=vectors)
    weights = retriever.settings.weights("zh")
    fused = retriever.fuse(rankings, weights)
    candidates = fused.ids[: small.late_depth]
    token_weights = retriever.token_weights(index, question)
    assert token_weights is not None and len(token_weights) == len(vectors[TOKENS])
    pieces = encoders[PRIMARY].token_pieces([question])[0]  # type: ignore[attr-defined]
    assert np.allclose(token_weights, index.piece_idf.weights(pieces))
    assert token_weights.max() > 1.5 * token_weights.min()  # not a mean in disguise
    scored = late.maxsim(vectors[TOKENS], *index.late, candidates, token_weights)  # type: ignore[misc]
    ranked = retriever.late_fused(index, "zh", rankings, weights, fused, vectors, question)
    assert np.array_equal(ranked.ids, retriever.fuse([*rankings, scored], [*weights, small.late_weight("zh")]).ids)
    assert np.allclose(ranked.scores, retriever.fuse([*rankings, scored], [*weights, small.late_weight("zh")]).scores)
    plain = Retriever(replace(small, late_idf=False), encoders, index)  # RAG_LATE_IDF=0: the plain mean
    assert plain.token_weights(index, question) is None
    mean = late.maxsim(vectors[TOKENS], *index.late, candidates)  # type: ignore[misc]
    assert np.array_equal(plain.late_fused(index, "zh", rankings, weights, fused, vectors, question).ids,
                          retriever.fuse([*rankings, mean], [*weights, small.late_weight("zh")]).ids)  # fmt: skip


def test_an_index_built_before_piece_counts_searches_with_the_plain_mean(
    small: Settings, encoders: dict[str, Encoder], capsys: pytest.CaptureFixture[str]
) -> None:
    import hashlib

    build_index(small, encoders, progress=False)
    version = current_version(small.index_dir)
    assert version is not None
    manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
    manifest["late"].pop("idf")
    (version / late.PIECE_COUNTS).unlink()
    manifest["files"].pop(late.PIECE_COUNTS)
    (version / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    old = load_index(small)
    assert old.late is not None and old.piece_idf is None
    capsys.readouterr()
    retriever = Retriever(small, encoders, old)
    assert "built before late interaction's idf weights" in capsys.readouterr().err  # says what a rebuild brings
    assert retriever.token_weights(old, "孩子可以绑定到父母的医保账户吗") is None
    assert retriever.search("孩子可以绑定到父母的医保账户吗", 1)[0].passage.doc_id == "family/kids.txt"
    assert build_index(small, encoders, progress=False).embedded == 0  # the next build counts them, embedding nothing
    assert load_index(small).piece_idf is not None
    capsys.readouterr()
    Retriever(small, encoders, load_index(small))
    assert "idf weights" not in capsys.readouterr().err
    # Counts that do not fit the manifest are one clear error.
    version = current_version(small.index_dir)
    assert version is not None
    np.save(version / late.PIECE_COUNTS, np.zeros((3, 2), dtype=np.int64))
    manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"][late.PIECE_COUNTS] = hashlib.sha256((version / late.PIECE_COUNTS).read_bytes()).hexdigest()
    (version / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexInvalidError, match="piece counts"):
        load_index(small)
