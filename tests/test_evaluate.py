"""Metrics as pure functions, the BEIR path, highlights, and `rag eval` against the live API."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from rag.beir import index_in_memory, load_benchmark
from rag.chunk import Passage
from rag.config import Settings
from rag.encoders import Encoder
from rag.errors import RagError
from rag.evaluate import evaluate, evaluate_benchmark, load_questions, mrr_at, ndcg_at, recall_at, relevant_passages, score
from rag.highlight import best_sentence, sentences
from rag.index import embedding_units_by_role
from rag.retrieve import Retriever

QUESTIONS = Path(__file__).resolve().parent / "data" / "questions.jsonl"


def test_metrics_on_a_known_ranking() -> None:
    ranked, relevant = ["a", "b", "c", "d"], {"c", "x"}
    assert recall_at(ranked, relevant, 2) == 0.0 and recall_at(ranked, relevant, 3) == 1.0
    assert mrr_at(ranked, relevant) == pytest.approx(1 / 3)
    assert ndcg_at(ranked, relevant) == pytest.approx((1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert ndcg_at(["c", "x"], relevant) == pytest.approx(1.0)
    report = score({"q1": ranked, "q2": ["x"]}, {"q1": relevant, "q2": {"x"}}, ["q1", "q2"])
    assert report["recall@1"] == 0.5 and report["mrr@10"] == pytest.approx((1 / 3 + 1) / 2, abs=1e-4)


def test_relevance_ignores_whitespace() -> None:
    assert relevant_passages(["可以 在沈阳交医保"], ["外地户籍人员是 可以在沈阳交医保的", "无关"]) == {"0"}
    assert relevant_passages([], ["任何"]) == set()


def test_bad_question_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "1", "question": "ok", "answers": []}\n{"question": "no id"}\n', encoding="utf-8")
    with pytest.raises(RagError, match=r"q.jsonl:2"):
        load_questions(path)


def _tiny_beir(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    corpus = [
        ("d1", "支付宝渠道目前仅支持港澳台同胞激活医保电子凭证。"),
        ("d2", "嘉兴市的车牌号码为浙F。"),
        ("d3", "扁鹊是战国时期的医学家。"),
    ]
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in corpus), encoding="utf-8"
    )
    queries = [("q1", "Can a foreigner activate it with Alipay?"), ("q2", "嘉兴的车牌是什么"), ("q3", "Who was Bian Que?")]
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries), encoding="utf-8")
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t1\n", encoding="utf-8")
    return folder


def test_beir_folder_is_indexed_in_memory_and_scored(settings: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> None:
    bench = load_benchmark(_tiny_beir(tmp_path))
    assert [p.doc_id for p in bench.passages] == ["d1", "d2", "d3"]
    memory = index_in_memory(bench.passages, encoders, embedding_units_by_role(settings), progress=False)
    retriever = Retriever(settings, encoders, memory)
    report = evaluate_benchmark(retriever, bench.queries, bench.qrels)
    assert report["overall"]["questions"] == 3
    assert report["overall"]["recall@5"] == 1.0
    assert report["overall"]["mrr@10"] >= 2 / 3
    assert set(report) >= {"overall", "en", "zh", "unanswerable"}
    assert report["unanswerable"] == {"questions": 0, "flagged_false": 0}
    assert 0 <= report["overall"]["flagged_true"] <= 1


@pytest.mark.slow
def test_beir_eval_in_the_milvus_store_scores_like_the_local_one(settings: Settings, encoders: dict[str, Encoder], tmp_path: Path) -> None:
    """`rag eval --beir` with RAG_STORE=milvus indexes the set into a temporary milvus-lite collection."""
    bench = load_benchmark(_tiny_beir(tmp_path))
    reports = []
    for store in ("local", "milvus"):
        s = replace(settings, store=store, index_dir=tmp_path / store)
        memory = index_in_memory(bench.passages, encoders, embedding_units_by_role(s), progress=False, settings=s)
        assert memory.store.name == store
        reports.append(evaluate_benchmark(Retriever(s, encoders, memory), bench.queries, bench.qrels))
    for part in ("overall", "en", "zh"):
        assert reports[1][part] == pytest.approx(reports[0][part], abs=0.005), part
    assert reports[1]["overall"]["recall@5"] == 1.0


def test_in_memory_index_answers_like_the_built_one(retriever: Retriever, encoders: dict[str, Encoder]) -> None:
    """The BEIR path must measure the product: same passages give the same hits and highlights."""
    settings, built = retriever.settings, retriever.index
    memory = Retriever(settings, encoders, index_in_memory(built.passages, encoders, embedding_units_by_role(settings), progress=False))
    for question in ("Can a foreigner activate it through Alipay?", "亲情账户最多可以绑定几个人", "红烧肉怎么做"):
        built_answer, memory_answer = retriever.answer(question, 5), memory.answer(question, 5)
        expected = [(h.passage.start, h.highlight) for h in built_answer.hits]
        assert [(h.passage.start, h.highlight) for h in memory_answer.hits] == expected
        assert memory_answer.confidence.answerable == built_answer.confidence.answerable
        assert memory_answer.confidence.coverage == pytest.approx(built_answer.confidence.coverage)


def test_not_a_beir_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RagError, match="BEIR"):
        load_benchmark(tmp_path)


def test_eval_command_on_a_beir_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rag.cli", "eval", "--beir", str(_tiny_beir(tmp_path)), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["overall"]["recall@5"] == 1.0


def test_sentences_split_lines_and_punctuation() -> None:
    text = "- 第一条。\n- 第二条!Third?\n  "
    assert [text[s.start : s.end] for s in sentences(text)] == ["- 第一条。", "- 第二条!", "Third?"]


def test_highlight_weighs_keywords_and_sentence_similarity() -> None:
    text = "先下载APP。然后完成实名认证。最后添加家人。"
    passage = Passage("d.txt", "t", ("t",), 100, 100 + len(text), 1, 1, text)

    def chosen(keywords: list[str], similarity: np.ndarray | None) -> str:
        span = best_sentence(passage, keywords, similarity)
        return text[span.start - 100 : span.end - 100]

    assert chosen([], np.array([0.1, 0.9, 0.2], dtype=np.float32)) == "然后完成实名认证。"  # no keyword: the closest
    assert chosen(["下载"], np.array([0.1, 0.2, 0.3], dtype=np.float32)) == "先下载APP。"  # a keyword outweighs a small lead
    assert chosen(["家人"], None) == "最后添加家人。"  # lexical only
    assert chosen(["家人"], np.array([0.9, 0.1], dtype=np.float32)) == "最后添加家人。"  # wrong length: lexical


def test_highlights_are_citable_sentences_of_the_passage(retriever: Retriever, settings: Settings) -> None:
    docs = {p.name: p.read_bytes().decode("utf-8") for p in settings.corpus_dir.glob("*.txt")}
    hits = retriever.search("How many people can bind one person's e-voucher in a month?", 5)
    for hit in hits:
        assert hit.passage.start <= hit.highlight.start < hit.highlight.end <= hit.passage.end
        assert docs[hit.passage.doc_id][hit.highlight.start : hit.highlight.end] in hit.passage.text
    top = next(h for h in hits if "6个人" in h.passage.text)
    assert "6个人" in docs[top.passage.doc_id][top.highlight.start : top.highlight.end]


@pytest.mark.slow
def test_eval_matches_an_outside_computation_over_the_api(retriever: Retriever, server: httpx.Client) -> None:
    """recall@5, MRR@10 and the `answerable` flag's rates computed from HTTP answers equal what `evaluate` reports."""
    questions = load_questions(QUESTIONS)
    questions = [q for q in questions if q.answers][::6] + [q for q in questions if not q.answers][::2]
    report = evaluate(retriever, questions, k=10)
    hits5, rr, flagged_true, flagged_false = [], [], [], 0
    for q in questions:
        body = server.post("/search", json={"question": q.question, "top_k": 10}).json()
        if not q.answers:
            flagged_false += body["answerable"] is False
            continue
        found = [any("".join(a.split()) in "".join(p["text"].split()) for a in q.answers) for p in body["passages"]]
        hits5.append(any(found[:5]))
        rr.append(next((1 / (i + 1) for i, f in enumerate(found) if f), 0.0))
        flagged_true.append(body["answerable"])
    assert report["overall"]["questions"] == len(hits5)
    assert report["overall"]["recall@5"] == pytest.approx(sum(hits5) / len(hits5), abs=1e-4)
    assert report["overall"]["mrr@10"] == pytest.approx(sum(rr) / len(rr), abs=1e-4)
    assert report["overall"]["flagged_true"] == pytest.approx(sum(flagged_true) / len(flagged_true), abs=1e-4)
    assert report["unanswerable"]["flagged_false"] == flagged_false > 0
