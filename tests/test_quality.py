"""Quality floors on the project's own question set (tests/data/questions.jsonl).

The floors sit a little under what the retriever measured when they were set (see docs/quality.md);
raise them when quality rises, never lower them to make a change pass.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from rag.evaluate import evaluate as run_evaluation
from rag.evaluate import load_questions
from rag.retrieve import Retriever

QUESTIONS = Path(__file__).resolve().parent / "data" / "questions.jsonl"

pytestmark = pytest.mark.slow

FLOORS = {
    # zh MRR 0.897 with late interaction (0.824 before, docs/quality.md "Late interaction"), 0.920 with
    # its question tokens weighed by idf (0.8973 with RAG_LATE_IDF=0, so this floor fails without it)
    "zh": {"recall@5": 0.94, "mrr@10": 0.90, "flagged_true": 0.93},
    # en MRR 0.826 with the query adapter v2, 0.828 with late interaction (English weight 0.25);
    # flagged_true 0.969 zh / 0.979 en with confidence-v5 (0.974 overall; v4 0.959 / 0.979)
    "en": {"recall@5": 0.92, "mrr@10": 0.80, "flagged_true": 0.93},
}
# Out-of-corpus questions the `answerable` flag marks false (7 of 14 zh, 4 of 14 en with confidence-v5; v4 had
# 2 and 4 at flagged_true 0.959 / 0.979; v3 2 and 6 at 0.969 / 0.949; v2
# 3 and 3 at 0.979 / 0.979, v1 6 and 2 at 0.949 / 1.000, docs/quality.md).
FLAGGED_FALSE_FLOORS = {"zh": 5, "en": 3}
# The confidence's AUROC, answerable vs out-of-corpus questions (0.776-0.780 with v1, 0.794 with v2, 0.796 with v3, 0.790 with v4,
# 0.789 with v5).
AUROC_FLOOR = 0.74


@pytest.fixture(scope="module")
def report(retriever: Retriever) -> dict[str, Any]:
    return run_evaluation(retriever, load_questions(QUESTIONS), k=10)


def _numbers(report: Any, path: str = "") -> dict[str, float]:
    """Every number of a report, by its path."""
    if isinstance(report, dict):
        return {k: v for key, value in report.items() for k, v in _numbers(value, f"{path}/{key}").items()}
    return {path: float(report)} if isinstance(report, int | float) and not isinstance(report, bool) else {}


def test_the_milvus_store_measures_the_same(report: dict[str, Any], milvus_retriever: Retriever) -> None:
    """`rag eval` with RAG_STORE=milvus (milvus-lite): every metric within 0.005 of the local store's."""
    ours, local = _numbers(run_evaluation(milvus_retriever, load_questions(QUESTIONS), k=10)), _numbers(report)
    assert ours.keys() == local.keys() and len(ours) > 20
    far = {k: (ours[k], local[k]) for k in ours if abs(ours[k] - local[k]) > 0.005 and "seconds" not in k and "ms" not in k}
    assert not far, far


def test_question_set_is_big_and_bilingual() -> None:
    questions = load_questions(QUESTIONS)
    answerable = [q for q in questions if q.answers]
    assert len(answerable) >= 30
    assert sum(q.lang == "en" for q in answerable) >= len(answerable) * 0.4
    assert sum(not q.answers for q in questions) >= 20


def test_every_answer_is_in_some_passage(report: dict[str, Any]) -> None:
    assert "answer_not_in_any_passage" not in report


@pytest.mark.parametrize("lang", sorted(FLOORS))
def test_quality_floors(report: dict[str, Any], lang: str) -> None:
    for metric, floor in FLOORS[lang].items():
        assert report[lang][metric] >= floor, f"{lang} {metric} = {report[lang][metric]} < {floor}"


@pytest.mark.parametrize("lang", sorted(FLAGGED_FALSE_FLOORS))
def test_answerable_flag_catches_out_of_corpus_questions(report: dict[str, Any], lang: str) -> None:
    got = report["unanswerable"][lang]["flagged_false"]
    assert got >= FLAGGED_FALSE_FLOORS[lang], f"{lang}: {got} of {report['unanswerable'][lang]['questions']} flagged false"


def test_confidence_ranks_answerable_above_out_of_corpus_questions(report: dict[str, Any]) -> None:
    assert report["confidence"]["auroc"] >= AUROC_FLOOR, report["confidence"]


def test_highlights_hold_the_answer(retriever: Retriever) -> None:
    """In relevant top-5 passages, the highlighted sentence holds the answer (0.83 zh / 0.78 en when set)."""
    held, total = {"zh": 0, "en": 0}, {"zh": 0, "en": 0}
    for q in load_questions(QUESTIONS):
        if not q.answers:
            continue
        answers = ["".join(a.split()) for a in q.answers]
        for hit in retriever.search(q.question, 5):
            if any(a in "".join(hit.passage.text.split()) for a in answers):
                sentence = hit.passage.text[hit.highlight.start - hit.passage.start : hit.highlight.end - hit.passage.start]
                total[q.lang] += 1
                held[q.lang] += any(a in "".join(sentence.split()) for a in answers)
    for lang in total:
        assert held[lang] / total[lang] >= 0.74, f"{lang}: {held[lang]}/{total[lang]} highlights hold the answer"


def test_the_own_set_asked_in_traditional_or_typed_full_width_keeps_its_floors(retriever: Retriever) -> None:
    """Chinese questions in Taiwan Traditional (OpenCC s2tw) and English ones typed full-width: 0.845 / 0.728
    MRR@10 before rag/normalize.py, the Simplified, half-width figures (0.920 / 0.829) since."""
    from opencc import OpenCC

    to_traditional = OpenCC("s2tw")

    def full_width(text: str) -> str:
        return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)

    typed = [
        q._replace(question=to_traditional.convert(q.question) if q.lang == "zh" else full_width(q.question))
        for q in load_questions(QUESTIONS)
    ]
    assert sum(t.question != q.question for t, q in zip(typed, load_questions(QUESTIONS), strict=True)) > 150
    report = run_evaluation(retriever, typed, k=10)
    for lang in FLOORS:
        assert report[lang]["mrr@10"] >= FLOORS[lang]["mrr@10"], f"{lang}: {report[lang]['mrr@10']}"


def _one_typo(question: str, seed: int) -> str:
    """One edit (swap, drop, double or a changed letter) inside one English word of 5+ letters."""
    rng = random.Random(seed)
    words = list(re.finditer(r"[A-Za-z]{5,}", question))
    if not words:
        return question
    m = rng.choice(words)
    w, i = m.group(), rng.randrange(1, len(m.group()) - 1)
    edited = rng.choice([w[:i] + w[i + 1] + w[i] + w[i + 2 :], w[:i] + w[i + 1 :], w[:i] + w[i] + w[i:], w[:i] + "q" + w[i + 1 :]])
    return question[: m.start()] + edited + question[m.end() :]


def test_the_own_set_typed_with_a_typo_keeps_its_english_floor(retriever: Retriever) -> None:
    """One typo in one word of every English question: MRR@10 0.765 before rag/spelling.py (0.829 typed right), 0.826 since."""
    questions = load_questions(QUESTIONS)
    typed = [q._replace(question=_one_typo(q.question, n)) if q.lang == "en" else q for n, q in enumerate(questions)]
    assert sum(t.question != q.question for t, q in zip(typed, questions, strict=True)) > 100
    report = run_evaluation(retriever, typed, k=10)
    assert report["en"]["mrr@10"] >= 0.80, report["en"]["mrr@10"]


def _one_homophone(question: str, seed: int) -> str:
    """One character of one Chinese word swapped for a common character read alike (what an input method offers)."""
    from rag.expand import character_readings
    from rag.tokenize import word_frequencies, words

    rng, sounds, freq = random.Random(seed), character_readings(), word_frequencies()
    chinese = [w for w in words(question) if len(w) >= 2 and re.fullmatch(r"[\u4e00-\u9fff]+", w)]
    if not chinese:
        return question
    word = rng.choice(chinese)
    i = rng.randrange(len(word))
    alike = [c for c, s in sounds.items() if set(s) & set(sounds.get(word[i], ())) and c != word[i] and freq.get(c, 0) > 1000]
    alike = sorted(alike, key=lambda c: (-freq.get(c, 0), c))[:6]
    return question.replace(word, word[:i] + rng.choice(alike) + word[i + 1 :], 1) if alike else question


def test_the_own_set_typed_with_a_homophone_keeps_a_chinese_floor(retriever: Retriever) -> None:
    """One homophone typo in one word of every Chinese question: MRR@10 0.920 typed right,
    0.902 mended by rag/homophones.py (0.8875 without), so this floor fails with it off."""
    questions = load_questions(QUESTIONS)
    typed = [q._replace(question=_one_homophone(q.question, n)) if q.lang == "zh" else q for n, q in enumerate(questions)]
    assert sum(t.question != q.question for t, q in zip(typed, questions, strict=True)) > 90
    report = run_evaluation(retriever, typed, k=10)
    assert report["zh"]["mrr@10"] >= 0.895, report["zh"]["mrr@10"]
