"""The calibrated `confidence` of a search: the probability that a returned passage answers.

Features are read off what the search already computed (each signal's ranking, the fused ranking,
the question's keyword units, the top passage's sentence cosines), and each is chosen so that it
means the same on any corpus: cosines, standardised scores and gaps, ranks, shares. Raw BM25
scores, passage counts and IDF sums grow with the corpus and are left out. Gradient-boosted trees
(or, for an older file, a logistic regression) over them, trained by `bench/train_confidence.py` on
the public sets only, turn them into a probability; the model is a JSON file (read with numpy by
rag/trees.py, no ML library at run time) that carries its version and feature list, and the index
manifest names the one it was built with. docs/quality.md has the training data and the measurements.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rag import model_files, trees
from rag.answerable import Unit
from rag.fusion import Ranking
from rag.trees import Forest

MODELS = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODELS / "confidence.json"
SIGNALS = ("e5", "use", "bm25")  # the order of Retriever.rankings
FEATURES = (
    "en",  # 1 for an English question
    "log_units",  # ln(1 + keyword units): question length
    "known",  # share of the question's keyword units the corpus holds at all
    "coverage",  # IDF-weighted share of the units the top 3 passages hold (rag/answerable.py)
    "disagreement",  # sum over active signals of ln(rank of the fused top passage)
    "fused_gap",  # fused score of the top passage minus the second's (z units)
    "sentence",  # best USE cosine of a sentence of the top passage
    "coverage1",  # the same IDF-weighted share, in the top passage alone
    "sentence_coverage",  # and in its highlighted sentence: an answer usually sits among the question's words
    "asks_number",  # 1 when the question asks for an amount, a time, a phone number (NUMBER_CUES)
    "top_number",  # 1 when the top passage's highlighted sentence holds a digit or a Chinese numeral
    *(f"{s}_{kind}" for s in SIGNALS for kind in ("top", "z", "gap", "logrank", "drop10")),
)


# What a question asking for a number says; a passage that holds no number rarely answers one.
NUMBER_CUES = re.compile(
    r"多少|几[个天年月岁次家种项位号]|多久|多长|多大|多高|多远|哪[一]?年|何时|什么时候|电话|号码|费用|价格|价钱|年龄"
    r"|\bhow (?:many|much|long|old|far|big|often)\b|\bwhat (?:year|time|date)\b|\bwhen\b|\bphone\b|\bnumber\b"
    r"|\b(?:cost|fee|price)s?\b",
    re.IGNORECASE,
)
NUMERALS = re.compile(r"[0-9０-９]|[一二三四五六七八九十两百千万]+(?:元|年|月|日|天|岁|次|号|周|小时|分钟|倍)")


class Model(NamedTuple):
    """A logistic regression over standardised features, or boosted trees over the raw ones
    (`forest`); `mean` fills a missing feature either way, so a signal that takes no part counts as average."""

    version: str
    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    threshold: float  # the operating point it was trained for (Settings.confidence_threshold overrides)
    meta: dict[str, Any]
    thresholds: dict[str, float] | None = None  # per question language, where trained so
    forest: Forest | None = None  # kind "trees": scale, coef and intercept are unused

    def threshold_for(self, lang: str) -> float:
        """The model's operating point for a question language."""
        return (self.thresholds or {}).get(lang, self.threshold)

    def probability(self, values: dict[str, float]) -> float:
        """P(a returned passage answers) for one search's features; NaN or absent features count as average."""
        x = np.array([values.get(name, math.nan) for name in self.features], dtype=np.float64)
        x = np.where(np.isfinite(x), x, self.mean)
        if self.forest is not None:
            logit = self.forest.raw(x)
        else:
            logit = float(self.intercept + ((x - self.mean) / self.scale) @ self.coef)
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))


def save_model(model: Model, path: Path) -> None:
    """Write the model as the small JSON the retriever reads."""
    data: dict[str, Any] = {"version": model.version, "kind": "logistic" if model.forest is None else "trees"}
    data |= {"features": list(model.features), "mean": [round(float(v), 6) for v in model.mean]}
    if model.forest is None:
        data |= {
            "scale": [round(float(v), 6) for v in model.scale],
            "coef": [round(float(v), 6) for v in model.coef],
            "intercept": round(model.intercept, 6),
        }
    data |= {"threshold": model.threshold, "thresholds": model.thresholds or {}, **model.meta}
    text = json.dumps(data, indent=1, ensure_ascii=False)
    if model.forest is not None:  # last and compact: thousands of nodes
        text = text[: text.rindex("}")].rstrip() + ',\n "forest": ' + json.dumps(trees.to_json(model.forest), separators=(",", ":")) + "\n}"
    path.write_text(text + "\n", encoding="utf-8")


_READ = {"version", "kind", "features", "mean", "scale", "coef", "intercept", "threshold", "thresholds", "forest"}


def _parse(data: dict[str, Any]) -> Model:
    features = model_files.features(data, FEATURES)
    (mean,) = model_files.vectors(data, ("mean",), len(features))
    version, threshold, meta = str(data["version"]), float(data["threshold"]), model_files.meta(data, _READ)
    thresholds = {str(k): float(v) for k, v in data.get("thresholds", {}).items()}
    if data["kind"] == "trees":
        forest = trees.from_json(data["forest"], len(features))
        ones, zeros = np.ones(len(features)), np.zeros(len(features))
        return Model(version, features, mean, ones, zeros, 0.0, threshold, meta, thresholds, forest)
    scale, coef = model_files.vectors(data, ("scale", "coef"), len(features))
    return Model(version, features, mean, np.where(scale > 0, scale, 1.0), coef, float(data["intercept"]), threshold, meta, thresholds)


def describe(path: str = "") -> dict[str, Any]:
    """What an index manifest and /health say of the confidence model at `path` ("" = the shipped one)."""
    model = load_model(path)
    where = Path(path) if path else DEFAULT_MODEL
    digest = hashlib.sha256(where.read_bytes()).hexdigest()
    return {"version": model.version, "file": str(where) if path else "shipped", "sha256": digest, "thresholds": model.thresholds or {}}


@lru_cache(maxsize=4)
def load_model(path: str = "") -> Model:
    """The model at `path` ("" = the shipped one); a file that is not one is a clear error."""
    where = Path(path) if path else DEFAULT_MODEL
    return model_files.read_model(where, "RAG_CONFIDENCE_MODEL", "confidence", ("logistic", "trees"), _parse)


TopPassage = tuple[float, float, str]  # its keyword coverage, its highlighted sentence's, and that sentence (search_features)


def known_share(units: Sequence[Unit], exclude: np.ndarray | None = None) -> float:
    """Share of keyword units with an alternative in some passage (outside `exclude`); 1 for no units."""
    if not units:
        return 1.0
    found = 0
    for unit in units:
        for ids in unit.postings:
            if exclude is not None and ids.size:
                ids = ids[~np.isin(ids, exclude)]
            if ids.size:
                found += 1
                break
    return found / len(units)


def signal_features(name: str, ranking: Ranking | None, top: int, depth: int) -> dict[str, float]:
    """One signal's top score, its z-score and gap to the next (in its own standard deviations), and
    the ln rank it gives the fused top passage; NaN when the signal took no part."""
    if ranking is None:
        return {f"{name}_{k}": math.nan for k in ("top", "z", "gap", "logrank", "drop10")}
    if not ranking.ids.size:
        empty = {"top": 0.0, "z": 0.0, "gap": 0.0, "logrank": math.log(depth + 1), "drop10": 0.0}
        return {f"{name}_{k}": v for k, v in empty.items()}
    scores = ranking.scores.astype(np.float64)
    std = float(scores.std()) + 1e-9
    where = np.flatnonzero(ranking.ids == top)
    tenth = scores[min(9, scores.size - 1)]
    return {
        # BM25's raw score grows with the corpus's IDF: only its standardised shape is kept.
        f"{name}_top": math.nan if name == "bm25" else float(scores[0]),
        f"{name}_z": float((scores[0] - scores.mean()) / std),
        f"{name}_gap": float((scores[0] - scores[1]) / std) if scores.size > 1 else 0.0,
        f"{name}_logrank": math.log(int(where[0]) + 1 if where.size else depth + 1),
        # the top score over the 10th, as a ratio for BM25 (its scale is the corpus's), a difference for cosines
        f"{name}_drop10": float(tenth / scores[0] if name == "bm25" else scores[0] - tenth),
    }


def search_features(
    lang: str,
    rankings: Sequence[Ranking | None],
    fused: Ranking,
    units: Sequence[Sequence[str]],
    disagreement: float,
    coverage: float,
    known: float,
    sentences: np.ndarray | None,
    depth: int,
    passage: TopPassage = (0.0, 0.0, ""),
    question: str = "",
) -> dict[str, float]:
    """Every feature of FEATURES for one search whose fused ranking is not empty; None rankings took no part.

    `passage`: the top passage's keyword coverage, its highlighted sentence's, and that sentence's text.
    """
    top = int(fused.ids[0])
    coverage1, sentence_coverage, highlighted = passage
    if not units:  # no word the keyword index could look up (emoji, punctuation): nothing shows the corpus knows it
        known = coverage = coverage1 = sentence_coverage = 0.0
    values = {
        "en": 1.0 if lang == "en" else 0.0,
        "log_units": math.log1p(len(units)),
        "known": known,
        "coverage": coverage,
        "disagreement": disagreement,
        "fused_gap": float(fused.scores[0] - fused.scores[1]) if fused.scores.size > 1 else 0.0,
        "sentence": float(sentences.max()) if sentences is not None and sentences.size else math.nan,
        "coverage1": coverage1,
        "sentence_coverage": sentence_coverage,
        "asks_number": 1.0 if NUMBER_CUES.search(question) else 0.0,
        "top_number": 1.0 if NUMERALS.search(highlighted) else 0.0,
    }
    for name, ranking in zip(SIGNALS, rankings, strict=True):
        values |= signal_features(name, ranking, top, depth)
    return values
