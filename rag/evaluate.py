"""Retrieval quality: recall@k, MRR@10 and nDCG@10 from plain dicts, whatever cut the passages.

The question file is JSONL, one question a line:
    {"id": "q1", "question": "...", "lang": "zh" | "en", "answers": ["exact text", ...]}
A passage is relevant when its text contains one of the answers, whitespace ignored. Questions with
no answers are out-of-corpus; they are counted apart and never enter the averages.

recall@k here is the share of questions with at least one relevant passage in the top k (the
"answering passage is found" rate); with one relevant passage per question it is plain recall.
The `confidence` of each answer is scored by its AUROC: how often an answerable question gets a
higher confidence than an out-of-corpus one (for a BEIR set, another set's questions can be added
as out-of-corpus ones: `negatives`).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm import tqdm

from rag.errors import RagError
from rag.retrieve import Retriever
from rag.tokenize import detect_language

CUTOFFS = (1, 5, 10)
_SPACE = re.compile(r"\s+")


class Question(NamedTuple):
    id: str
    question: str
    lang: str
    answers: tuple[str, ...]


def squash(text: str) -> str:
    return _SPACE.sub("", text)


def load_questions(path: Path) -> list[Question]:
    """Read and check a question file; a bad line is reported with its number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RagError(f"cannot read question file {path}: {exc}") from exc
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            questions.append(Question(str(row["id"]), str(row["question"]), str(row.get("lang", "zh")), tuple(row.get("answers", []))))
        except (ValueError, KeyError, TypeError) as exc:
            raise RagError(f'{path}:{number}: expected {{"id", "question", "lang", "answers"}} ({exc})') from exc
    if not questions:
        raise RagError(f"{path} holds no questions")
    return questions


# --- metrics: pure functions ---------------------------------------------------------------------


def recall_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    return 1.0 if any(pid in relevant for pid in ranked[:k]) else 0.0


def mrr_at(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    for rank, pid in enumerate(ranked[:k], start=1):
        if pid in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    """Binary-gain nDCG; the ideal ranking puts every relevant passage first."""
    dcg = sum(1.0 / math.log2(rank + 1) for rank, pid in enumerate(ranked[:k], start=1) if pid in relevant)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def score(rankings: Mapping[str, Sequence[str]], relevant: Mapping[str, set[str]], ids: Iterable[str], k: int = 10) -> dict[str, float]:
    """Mean metrics over the given question ids (each must have relevant passages)."""
    ids = list(ids)
    if not ids:
        return {"questions": 0}
    out: dict[str, float] = {"questions": len(ids)}
    for cutoff in CUTOFFS:
        if cutoff <= k:
            out[f"recall@{cutoff}"] = _mean(recall_at(rankings[q], relevant[q], cutoff) for q in ids)
    out["mrr@10"] = _mean(mrr_at(rankings[q], relevant[q], min(10, k)) for q in ids)
    out["ndcg@10"] = _mean(ndcg_at(rankings[q], relevant[q], min(10, k)) for q in ids)
    return out


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """P(a positive scores above a negative), ties counting half (Mann-Whitney); NaN without both."""
    if not positives or not negatives:
        return float("nan")
    neg = np.sort(np.asarray(negatives, dtype=np.float64))
    pos = np.asarray(positives, dtype=np.float64)
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (pos.size * neg.size))


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return round(sum(items) / len(items), 4) if items else 0.0


# --- running an evaluation -----------------------------------------------------------------------


def relevant_passages(answers: Sequence[str], passage_texts: Sequence[str]) -> set[str]:
    """Passage ids (as strings) whose text holds one of the answers, whitespace ignored."""
    wanted = [squash(a) for a in answers if squash(a)]
    return {str(i) for i, text in enumerate(passage_texts) if any(a in text for a in wanted)}


def evaluate(retriever: Retriever, questions: Sequence[Question], k: int = 10, progress: bool = False) -> dict[str, Any]:
    """Metrics for a question file: relevance comes from answer strings found in passages."""
    texts = [squash(p.text) for p in retriever.index.passages]
    relevant = {q.id: relevant_passages(q.answers, texts) for q in questions if q.answers}
    missing = [qid for qid, rel in relevant.items() if not rel]
    report = evaluate_queries(
        retriever,
        queries={q.id: q.question for q in questions},
        relevant={qid: rel for qid, rel in relevant.items() if rel},
        langs={q.id: q.lang for q in questions},
        k=k,
        progress=progress,
    )
    if missing:
        report["answer_not_in_any_passage"] = missing
    return report


def evaluate_queries(
    retriever: Retriever,
    queries: Mapping[str, str],
    relevant: Mapping[str, set[str]],
    langs: Mapping[str, str],
    k: int = 10,
    progress: bool = False,
) -> dict[str, Any]:
    """The one evaluation: run every query, score the answerable ones overall and per language.

    `relevant` maps a query id to passage positions (as strings); queries without an entry are
    out-of-corpus and only counted.
    """
    position = {id(p): str(i) for i, p in enumerate(retriever.index.passages)}
    bar = tqdm(queries.items(), desc="questions", unit="q", disable=not progress, file=sys.stderr, leave=False)
    answers = {qid: retriever.answer(text, k) for qid, text in bar}
    rankings = {qid: [position[id(h.passage)] for h in a.hits] for qid, a in answers.items()}
    flags = {qid: a.confidence.answerable for qid, a in answers.items()}
    answerable = [qid for qid in queries if qid in relevant]
    unanswerable = [qid for qid in queries if qid not in relevant]
    report: dict[str, Any] = {"overall": score(rankings, relevant, answerable, k) | flag_rate(flags, answerable)}
    for lang in sorted({langs[qid] for qid in answerable}):
        ids = [qid for qid in answerable if langs[qid] == lang]
        report[lang] = score(rankings, relevant, ids, k) | flag_rate(flags, ids)
    report["unanswerable"] = flagged_false(flags, unanswerable)
    for lang in sorted({langs[qid] for qid in unanswerable}):
        report["unanswerable"][lang] = flagged_false(flags, [qid for qid in unanswerable if langs[qid] == lang])
    report["confidence"] = confidence_report({qid: a.confidence.confidence for qid, a in answers.items()}, answerable, unanswerable)
    report["misses@5"] = [qid for qid in answerable if not recall_at(rankings[qid], relevant[qid], 5)]
    return report


def confidence_report(confidence: Mapping[str, float], answerable: Sequence[str], unanswerable: Sequence[str]) -> dict[str, Any]:
    """AUROC of the confidence, answerable vs out-of-corpus questions (absent without both)."""
    if not answerable or not unanswerable:
        return {}
    value = auroc([confidence[q] for q in answerable], [confidence[q] for q in unanswerable])
    return {"auroc": round(value, 4), "answerable": len(answerable), "unanswerable": len(unanswerable)}


def flag_rate(flags: Mapping[str, bool], ids: Sequence[str]) -> dict[str, float]:
    """Share of answerable questions whose `answerable` flag is true (the target is at least 0.95)."""
    return {"flagged_true": _mean(float(flags[q]) for q in ids)} if ids else {}


def flagged_false(flags: Mapping[str, bool], ids: Sequence[str]) -> dict[str, Any]:
    """How many out-of-corpus questions the `answerable` flag marks false."""
    return {"questions": len(ids), "flagged_false": sum(not flags[q] for q in ids)}


def evaluate_benchmark(
    retriever: Retriever,
    queries: Mapping[str, str],
    qrels: Mapping[str, set[str]],
    k: int = 10,
    progress: bool = False,
    negatives: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Metrics for a BEIR set whose corpus is the retriever's index (passage doc_id = corpus id).

    `negatives` (id -> text, e.g. another set's queries) are asked too, as out-of-corpus questions.
    """
    queries = dict(queries) | with_negatives(queries, negatives or {})
    by_corpus_id = {p.doc_id: str(i) for i, p in enumerate(retriever.index.passages)}
    relevant = {qid: {by_corpus_id[c] for c in ids if c in by_corpus_id} for qid, ids in qrels.items() if qid in queries}
    langs = {qid: detect_language(text) for qid, text in queries.items()}
    report = evaluate_queries(retriever, queries, {q: r for q, r in relevant.items() if r}, langs, k, progress)
    report.pop("misses@5")
    return report


def with_negatives(queries: Mapping[str, str], negatives: Mapping[str, str]) -> dict[str, str]:
    """`negatives` under ids that cannot collide with the set's own (`neg:` + id)."""
    return {f"neg:{qid}": text for qid, text in negatives.items() if f"neg:{qid}" not in queries}


def format_table(report: dict[str, Any]) -> str:
    """A fixed-width table of the metrics, one row per group."""
    columns = ["questions", "recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "flagged_true"]
    lines = [f"{'set':<14}" + "".join(f"{c:>13}" for c in columns)]
    for name, metrics in report.items():
        if not isinstance(metrics, dict) or name in ("unanswerable", "confidence"):
            continue
        cells = "".join(
            f"{metrics[c]:>13}" if isinstance(metrics.get(c), int) else f"{metrics.get(c, float('nan')):>13.3f}" for c in columns
        )
        lines.append(f"{name:<14}{cells}")
    lines.append("(flagged_true: share of answerable questions whose `answerable` flag is true)")
    un = report.get("unanswerable", {})
    if un.get("questions"):
        per_lang = [f"{lang} {v['flagged_false']} of {v['questions']}" for lang, v in un.items() if isinstance(v, dict)]
        detail = f" ({', '.join(per_lang)})" if per_lang else ""
        lines.append(f"unanswerable: {un['questions']} questions, {un['flagged_false']} flagged false{detail}")
    conf = report.get("confidence", {})
    if conf:
        counts = f"{conf['answerable']} answerable vs {conf['unanswerable']} unanswerable questions"
        lines.append(f"confidence AUROC {conf['auroc']:.3f} ({counts})")
    if report.get("answer_not_in_any_passage"):
        lines.append(f"answers found in no passage: {', '.join(report['answer_not_in_any_passage'])}")
    return "\n".join(lines)
