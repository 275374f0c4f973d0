"""Train the `confidence` model (rag/confidence.py) on the public sets only, and measure it.

Rows are labelled searches (bench/confidence_rows.py): public questions against their own corpus
(label: a relevant passage in the top 5), the same with the relevant passage masked out
(leave-one-out: on-topic, unanswerable), other sets' questions (off-topic), each on the whole
public corpus and on narrow corpora cut from it.

The model is gradient-boosted trees (scikit-learn's histogram boosting here, evaluated with numpy
by rag/trees.py at run time), each kind of negative weighing as much in total as the positives.
Thresholds are set out of fold: for each public corpus a model trained on the other corpora's rows
scores this corpus's rows, and each question language's threshold is the highest that keeps KEEP
of those unseen answered searches true. (Set on the rows the final model was fitted to, where it
is nearly perfect, a threshold keeps far fewer answered questions true on a new corpus.)

The shipped model is trained on every public row. The project's own set (tests/data/questions.jsonl),
its off-topic questions (tests/data/off_topic.jsonl) and the held-out set (bench/holdout/) are only
measured, never trained on; the logistic regression of confidence-v1 is measured alongside.

    .venv/bin/python bench/train_confidence.py              # collect (cached), train, report, write the model and docs
    .venv/bin/python bench/train_confidence.py --no-write   # report only
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from confidence_rows import CORPORA, Row, collect_off_topic, collect_project, collect_public  # noqa: E402
from doc_blocks import update_doc  # noqa: E402  (bench/ is on the path of a script run from it)
from row_cache import load_or_collect  # noqa: E402

from rag.confidence import DEFAULT_MODEL, FEATURES, Model, save_model  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.evaluate import auroc  # noqa: E402
from rag.trees import Forest  # noqa: E402

DOC = ROOT / "docs" / "quality.md"
KEEP = 0.98  # share of unseen answered searches (out of fold) each threshold keeps true (target 95%; docs/quality.md)
VERSION = "confidence-v5"
# bm25_top is NaN by design (a raw BM25 score is the corpus's scale), so it carries nothing to learn.
TRAINED = tuple(f for f in FEATURES if f != "bm25_top")
BOOSTING = {"max_iter": 300, "max_depth": 4, "learning_rate": 0.05, "l2_regularization": 1.0, "min_samples_leaf": 20}

Fit = Callable[[list[Row]], Model]


def matrix(rows: list[Row], features: Iterable[str], mean: np.ndarray | None = None) -> np.ndarray:
    x = np.array([[r["features"].get(f, np.nan) for f in features] for r in rows], dtype=np.float64)
    x = np.where(np.isfinite(x), x, np.nan)
    fill = np.nanmean(x, axis=0) if mean is None else mean
    return np.where(np.isnan(x), fill, x)


def sample_weights(rows: list[Row]) -> np.ndarray:
    """Each kind of negative (loo, off) weighs as much in total as the positives."""
    groups = [("pos" if r["label"] else r["kind"]) for r in rows]
    counts = {g: groups.count(g) for g in set(groups)}
    positives = counts.get("pos", 1)
    return np.array([positives / counts[g] for g in groups]) * len(rows) / (positives * len(counts))


def fit_trees(rows: list[Row], features: tuple[str, ...] = TRAINED) -> Model:
    from sklearn.ensemble import HistGradientBoostingClassifier  # bench only: the retriever reads the exported arrays

    x = matrix(rows, features)
    clf = HistGradientBoostingClassifier(**BOOSTING, random_state=0)
    clf.fit(x, [r["label"] for r in rows], sample_weight=sample_weights(rows))
    return Model(VERSION, features, x.mean(axis=0), np.ones(len(features)), np.zeros(len(features)), 0.0, 0.5, {}, forest=export(clf))


def export(clf: Any) -> Forest:
    """scikit-learn's fitted trees as one flat Forest (node indices made absolute)."""
    parts, roots, offset = [], [], 0
    for (predictor,) in clf._predictors:  # binary: one tree per iteration
        nodes = predictor.nodes
        leaf = nodes["is_leaf"].astype(bool)
        parts.append(
            (
                np.where(leaf, -1, nodes["feature_idx"]).astype(np.int64),
                nodes["num_threshold"].astype(np.float64),
                nodes["missing_go_to_left"].astype(bool),
                np.where(leaf, 0, nodes["left"] + offset).astype(np.int64),
                np.where(leaf, 0, nodes["right"] + offset).astype(np.int64),
                np.where(leaf, nodes["value"], 0.0).astype(np.float64),
            )
        )
        roots.append(offset)
        offset += len(nodes)
    columns = [np.concatenate(c) for c in zip(*parts, strict=True)]
    return Forest(np.array(roots, dtype=np.int64), *columns, float(np.ravel(clf._baseline_prediction)[0]))


def fit_logistic(rows: list[Row], features: tuple[str, ...] = TRAINED, l2: float = 1.0) -> Model:
    """confidence-v1's model, measured alongside: L2 logistic regression by Newton's method on standardised features."""
    x = matrix(rows, features)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    y = np.array([r["label"] for r in rows], dtype=np.float64)
    weight = sample_weights(rows)
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(z @ w, -60, 60)))
        grad = z.T @ (weight * (p - y)) + penalty * w
        hess = (z * (weight * p * (1 - p))[:, None]).T @ z + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return Model("logistic", features, mean, scale, w[1:], float(w[0]), 0.5, {})


def predict(model: Model, rows: list[Row]) -> np.ndarray:
    return np.array([model.probability(r["features"]) for r in rows])


def out_of_fold(rows: list[Row], fit: Fit) -> np.ndarray:
    """Each row's probability from a model trained without its corpus."""
    p = np.zeros(len(rows))
    for corpus in CORPORA:
        picked = [i for i, r in enumerate(rows) if r["corpus"] == corpus]
        p[picked] = predict(fit([r for r in rows if r["corpus"] != corpus]), [rows[i] for i in picked])
    return p


def thresholds(p: np.ndarray, rows: list[Row]) -> dict[str, float]:
    """Per question language, the highest threshold (3 decimals) that keeps KEEP of the answered rows true."""
    out = {}
    for lang in ("zh", "en"):
        answered = np.sort(p[[i for i, r in enumerate(rows) if r["label"] and r["lang"] == lang]])
        out[lang] = float(np.floor(answered[int((1 - KEEP) * len(answered))] * 1000) / 1000)
    return out


# --- reporting ------------------------------------------------------------------------------------


def rates(p: np.ndarray, rows: list[Row], t: dict[str, float]) -> dict[str, Any]:
    """AUROC (answered vs not) and the flag's rates by kind of row, at thresholds `t`."""
    flags = p >= np.array([t[r["lang"]] for r in rows])
    y = np.array([r["label"] for r in rows])
    out: dict[str, Any] = {"auroc": auroc(p[y == 1].tolist(), p[y == 0].tolist()) if 0 < y.sum() < len(y) else None}
    for kind, key in (("own", "kept"), ("own", "answerable"), ("loo", "loo"), ("off", "off"), ("unanswered", "unanswered")):
        picked = [i for i, r in enumerate(rows) if r["kind"] == kind and (key != "kept" or r["label"])]
        if picked:
            share = float(flags[picked].mean())
            out[key] = (share if kind == "own" else 1 - share, len(picked))
    return out


def cell(value: tuple[float, int] | None) -> str:
    return "-" if value is None else f"{value[0]:.2f} of {value[1]}"


def line(label: str, r: dict[str, Any]) -> str:
    auc = "-" if r["auroc"] is None else f"{r['auroc']:.3f}"
    cells = [cell(r.get(k)) for k in ("kept", "answerable", "loo", "off", "unanswered")]
    return f"| {label} | {auc} | {' | '.join(cells)} |"


def report(
    public: list[Row], oof: np.ndarray, t: dict[str, float], shipped: Model, logistic: tuple[Model, dict[str, float]], project: list[Row]
) -> str:
    lines = [
        f"Thresholds (out of fold, keeping {KEEP:.0%} of unseen answered searches true): "
        + ", ".join(f"{lang} {v}" for lang, v in t.items()),
        "",
        "| rows | AUROC | answered kept true | all answerable kept true | leave-one-out flagged false"
        " | off-topic flagged false | no-answer questions flagged false |",
        "|---|---|---|---|---|---|---|",
    ]
    for corpus in CORPORA:
        for narrow in (False, True):
            picked = [i for i, r in enumerate(public) if r["corpus"] == corpus and ("narrow" in r) == narrow]
            where = "narrow corpora" if narrow else "whole corpus"
            lines.append(line(f"{corpus}, {where} (out of fold)", rates(oof[picked], [public[i] for i in picked], t)))
    sets = {
        "own set": [r for r in project if r["set"] in ("data", "off_topic") or r["kind"] == "off"],
        "held-out set": [r for r in project if r["set"] == "holdout"],
    }
    for model, cut, name in ((shipped, t, VERSION), (*logistic, "logistic (v1's model), same rows")):
        for label, rows in sets.items():
            p = predict(model, rows)  # once; the many-kinds rows are reported apart from the public off-topic ones
            kinds = [i for i, row in enumerate(rows) if row["set"] == "off_topic"]
            r = rates(p, rows, cut)
            if kinds:
                rest = [i for i, row in enumerate(rows) if row["set"] != "off_topic"]
                r["off"] = rates(p[rest], [rows[i] for i in rest], cut)["off"]
            lines.append(line(f"{label}, shipped corpus, {name}", r))
            if kinds:
                many = rates(p[kinds], [rows[i] for i in kinds], cut)
                lines.append(line(f"off-topic questions of many kinds (tests/data/off_topic.jsonl), {name}", many))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-set", type=int, default=300, help="questions sampled from each public set")
    parser.add_argument("--off-per-set", type=int, default=100, help="of those, asked against each other corpus as off-topic")
    parser.add_argument("--narrow-per-set", type=int, default=300, help="of those, each asked on a narrow corpus of its own")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rag-confidence3"), help="folder of cached rows")
    parser.add_argument(
        "--adapter-folds", type=Path, default=Path("/tmp/rag-adapter-folds"), help="bench/train_adapter.py --report's fold adapters"
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--no-write", action="store_true", help="print only; leave the model and docs/quality.md alone")
    args = parser.parse_args()
    settings = Settings.from_env()
    tag = f"{args.per_set}-{args.off_per_set}-{args.narrow_per_set}-{args.seed}"
    public = load_or_collect(
        args.cache / f"public-{tag}.jsonl",
        lambda: collect_public(settings, args.per_set, args.off_per_set, args.narrow_per_set, args.seed, args.adapter_folds),
    )
    project = load_or_collect(
        args.cache / f"project-{args.off_per_set}-{args.seed}.jsonl",
        lambda: collect_project(settings, args.off_per_set, args.seed, args.adapter_folds),
    )
    project += load_or_collect(args.cache / "off-topic.jsonl", lambda: collect_off_topic(settings))
    oof = out_of_fold(public, fit_trees)
    t = thresholds(oof, public)
    sizes = {k: sum(r["kind"] == k for r in public) for k in ("own", "loo", "off")}
    trained_on = sorted(n for v in CORPORA.values() for n in v)
    meta = {
        "label": "a relevant passage in the top 5",
        "trained_on": trained_on,
        "rows": sizes,
        "narrow_rows": sum("narrow" in r for r in public),
    }
    model = fit_trees(public)._replace(threshold=min(t.values()), thresholds=t, meta=meta | {"boosting": BOOSTING})
    logistic = fit_logistic(public)
    text = report(public, oof, t, model, (logistic, thresholds(out_of_fold(public, fit_logistic), public)), project)
    print(text)
    if not args.no_write:
        save_model(model, DEFAULT_MODEL)
        update_doc(DOC, "bench/train_confidence.py", text, "The answerable flag")


if __name__ == "__main__":
    main()
