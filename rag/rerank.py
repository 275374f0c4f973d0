"""Learning to rank: reorder the fused top candidates by a small model over per-candidate features.

Fusion adds each signal's standardised score with fixed weights; it cannot tell that, say, a
passage holding every keyword of the question and the best-matching sentence should beat one that
only e5 likes. The ranker sees, for each of the fused top `depth` candidates, what every signal
said about it (standardised score, rank, distance to that signal's best, whether it found it at
all), its fused score and rank, the share of the question's keyword units (IDF-weighted) and of its
Chinese characters that the passage holds, its best USE sentence cosine, and its length. Each is
chosen to mean the same on any corpus (no raw BM25 score, no passage count). A linear model per
question language, trained pairwise (relevant vs each other candidate of the same search, logistic
loss) by `bench/train_ranker.py` on the public sets only, scores them; the candidates are sorted by
that score, the rest of the fused ranking follows unchanged. The model is a small JSON file read
with numpy (no ML library at run time), versioned like rag/models/confidence.json.
docs/quality.md ("Learning to rank") has the training data and the measurements.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rag import answerable, model_files
from rag.fusion import Ranking

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "ranker.json"
SIGNALS = ("e5", "use", "bm25")  # the order of Retriever.rankings
FEATURES = (
    *(f"{s}_{kind}" for s in SIGNALS for kind in ("z", "found", "logrank", "below")),
    "fused_z",  # the fused score standardised over the candidates
    "fused_below",  # fused top score minus this one's
    "fused_logrank",
    "coverage",  # IDF-weighted share of the question's keyword units in this passage
    "coverage_below",  # the best candidate's coverage minus this one's
    "chars",  # share of the question's distinct Chinese characters in this passage
    "sentence",  # best USE cosine of one of the passage's sentences
    "sentence_below",  # the best candidate's sentence cosine minus this one's
    "log_len",  # ln(characters of the passage)
)


class LinearRanker(NamedTuple):
    """Per question language, a linear score over standardised features; `mean` fills a missing one."""

    version: str
    features: tuple[str, ...]
    depth: int  # how many fused candidates are reordered
    weights: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # lang -> (mean, scale, coef)
    meta: dict[str, Any]

    def scores(self, lang: str, x: np.ndarray) -> np.ndarray:
        """One score per row of `x` (columns in FEATURES order), higher is better."""
        mean, scale, coef = self.weights.get(lang) or next(iter(self.weights.values()))
        x = x[:, [FEATURES.index(f) for f in self.features]]
        x = np.where(np.isfinite(x), x, mean)
        return np.asarray(((x - mean) / scale) @ coef)


def save_model(model: LinearRanker, path: Path) -> None:
    """Write the model as the small JSON the retriever reads."""
    data = {
        "version": model.version,
        "kind": "linear-pairwise",
        "features": list(model.features),
        "depth": model.depth,
        "languages": {
            lang: {key: [round(float(v), 6) for v in arr] for key, arr in zip(("mean", "scale", "coef"), w, strict=True)}
            for lang, w in model.weights.items()
        },
        **{k: v for k, v in model.meta.items() if k not in ("version", "kind", "features", "depth", "languages")},
    }
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


_READ = {"version", "kind", "features", "depth", "languages"}


def _parse(data: dict[str, Any]) -> LinearRanker:
    features = model_files.features(data, FEATURES)
    weights = {}
    for lang, w in data["languages"].items():
        mean, scale, coef = model_files.vectors(w, ("mean", "scale", "coef"), len(features), f"{lang}: ")
        weights[str(lang)] = (mean, np.where(scale > 0, scale, 1.0), coef)
    if not weights:
        raise ValueError("no language")
    depth = int(data["depth"])
    if depth < 2:
        raise ValueError("depth must be at least 2")
    return LinearRanker(str(data["version"]), features, depth, weights, model_files.meta(data, _READ))


@lru_cache(maxsize=4)
def load_model(path: str = "") -> LinearRanker:
    """The model at `path` ("" = the shipped one); a file that is not one is a clear error."""
    where = Path(path) if path else DEFAULT_MODEL
    return model_files.read_model(where, "RAG_RANKER_MODEL", "ranker", ("linear-pairwise",), _parse)


def _signal_columns(ranking: Ranking | None, candidates: np.ndarray, cosine: bool, depth: int) -> list[np.ndarray]:
    """z, found, ln rank and distance below the signal's best, for each candidate; NaN when the signal took no part."""
    n = candidates.size
    if ranking is None:
        return [np.full(n, math.nan)] * 4
    if not ranking.ids.size:
        return [np.zeros(n), np.zeros(n), np.full(n, math.log(depth + 1)), np.ones(n)]
    scores = ranking.scores.astype(np.float64)
    z = (scores - scores.mean()) / (scores.std() + 1e-9)
    position = {pid: i for i, pid in enumerate(ranking.ids.tolist())}
    where = np.array([position.get(pid, -1) for pid in candidates.tolist()])
    found = where >= 0
    at = np.where(found, where, scores.size - 1)  # a candidate the signal missed counts as its last
    # A cosine's distance is in cosine units; BM25's (scale: the corpus's IDF) as a share of its best.
    below = scores[0] - scores[at] if cosine else 1.0 - scores[at] / (scores[0] + 1e-9)
    return [
        z[at],
        found.astype(np.float64),
        np.log(np.where(found, where + 1, depth + 1).astype(np.float64)),
        np.where(found, below, below if cosine else 1.0),
    ]


def candidate_features(
    lang: str,
    rankings: Sequence[Ranking | None],
    fused: Ranking,
    depth: int,
    keyword_index: Any,
    units: Sequence[Sequence[str]],
    question: str,
    texts: Sequence[str],
    sentences: Callable[[int], np.ndarray | None],
    signal_depth: int,
) -> np.ndarray:
    """FEATURES for the fused top `depth` candidates, one row each; None rankings took no part.

    `texts[i]` is the text of the i-th candidate; `sentences(pid)` the USE cosines of passage pid's sentences.
    """
    del lang  # the model is chosen by language; no feature depends on it
    candidates = fused.ids[:depth]
    n = candidates.size
    columns: list[np.ndarray] = []
    for name, ranking in zip(SIGNALS, rankings, strict=True):
        columns += _signal_columns(ranking, candidates, name != "bm25", signal_depth)
    fs = fused.scores.astype(np.float64)
    columns.append((fs[:n] - fs.mean()) / (fs.std() + 1e-9))
    columns.append(fs[0] - fs[:n])
    columns.append(np.log(np.arange(1, n + 1, dtype=np.float64)))
    total = np.zeros(n)
    weight_sum = 0.0
    for unit in answerable.weigh(keyword_index, units):
        weight_sum += unit.weight
        if unit.postings:
            total += unit.weight * np.isin(candidates, np.concatenate(unit.postings))
    cover = total / weight_sum if weight_sum else np.ones(n)
    columns += [cover, cover.max() - cover]
    han = {c for c in question if "\u4e00" <= c <= "\u9fff"}
    columns.append(np.array([sum(c in t for c in han) / len(han) for t in texts]) if han else np.full(n, math.nan))
    best = []
    for pid in candidates.tolist():
        sims = sentences(pid)
        best.append(float(sims.max()) if sims is not None and sims.size else math.nan)
    sentence = np.array(best)
    columns += [sentence, (np.nanmax(sentence) - sentence) if np.isfinite(sentence).any() else sentence]
    columns.append(np.log1p(np.array([len(t) for t in texts], dtype=np.float64)))
    return np.column_stack(columns) if n else np.empty((0, len(FEATURES)))


def features_of(
    retriever: Any,
    index: Any,
    question: str,
    lang: str,
    rankings: Sequence[Ranking],
    weights: Sequence[float],
    fused: Ranking,
    units: Sequence[Sequence[str]],
    vectors: dict[str, np.ndarray],
    depth: int,
) -> np.ndarray:
    """candidate_features for one search of `retriever` (rag.retrieve.Retriever), as its answer() computed it."""
    from rag.encoders import PRIMARY, SECOND

    roles = (PRIMARY, SECOND, None)
    taking_part = [bool(w) and (role is None or role in retriever.encoders) for w, role in zip(weights, roles, strict=True)]
    texts = [index.passages[pid].text for pid in fused.ids[:depth].tolist()]
    return candidate_features(
        lang,
        [r if on else None for r, on in zip(rankings, taking_part, strict=True)],
        fused,
        depth,
        index.keyword,
        units,
        question,
        texts,
        lambda pid: retriever.sentence_similarities(index, pid, vectors),
        retriever.settings.candidates,
    )


def reorder(model: LinearRanker, lang: str, fused: Ranking, x: np.ndarray) -> Ranking:
    """`fused` with its first len(x) candidates sorted by the model's score (ties: fused order).

    Each passage keeps its fused score, so the scores after reordering need not be descending.
    """
    n = len(x)
    if n < 2:
        return fused
    order = np.argsort(-model.scores(lang, x), kind="stable")
    ids = np.concatenate([fused.ids[:n][order], fused.ids[n:]])
    scores = np.concatenate([fused.scores[:n][order], fused.scores[n:]])
    return Ranking(ids, scores)
