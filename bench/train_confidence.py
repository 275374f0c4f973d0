"""Train the `confidence` model (rag/confidence.py) on the public sets only, and measure it.

Labelled searches, each a row of rag/confidence.FEATURES and a label "a returned passage answers"
(a relevant passage in the top 5):

- *own*: a public set's questions against its own corpus (label 1 when the top 5 holds the
  relevant passage, else 0);
- *loo*: the same questions with their relevant passages masked out of every signal's ranking
  before fusion (on-topic but unanswerable; label 0);
- *off*: another set's questions against this corpus (off-topic; label 0). The xquad paragraph
  and xquadr sentence corpora hold the same articles, so their questions are never each other's
  negatives.

Rotation: for each corpus, a model trained on the rows of the other corpora is scored on its rows
(XQuAD's Chinese and English question sets share the questions' text, only with each other's
corpora). The shipped model is trained on every public row; the project's own set
(tests/data/questions.jsonl) and the held-out set (bench/holdout/) are then only measured, with
public questions as off-topic ones against the shipped corpus. Rows are cached in --cache.

    .venv/bin/python bench/train_confidence.py              # collect (cached), train, report, write the model
    .venv/bin/python bench/train_confidence.py --no-write   # report only
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from doc_blocks import update_doc  # noqa: E402  (bench/ is on the path of a script run from it)

from rag.beir import index_in_memory, load_benchmark  # noqa: E402
from rag.cli import open_retriever  # noqa: E402
from rag.confidence import DEFAULT_MODEL, FEATURES, Model, save_model  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.encoders import load_encoders  # noqa: E402
from rag.evaluate import auroc, load_questions, relevant_passages, squash  # noqa: E402
from rag.index import embedding_units_by_role  # noqa: E402
from rag.retrieve import Retriever  # noqa: E402
from rag.tokenize import detect_language  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
DOC = ROOT / "docs" / "quality.md"
OWN = ROOT / "tests" / "data" / "questions.jsonl"
HOLDOUT = ROOT / "bench" / "holdout" / "questions.jsonl"
# corpus -> the sets whose questions it answers (the first names the corpus folder)
CORPORA = {
    "xquad": ["xquad_zh2zh_para", "xquad_en2zh_para"],
    "xquadr": ["xquadr_en2zh_sent"],
    "cmrc": ["cmrc2018_trial_para"],
    "toyhom": ["toyhom_title_public"],
}
SAME_ARTICLES = {"xquad": {"xquad", "xquadr"}, "xquadr": {"xquad", "xquadr"}}
KEEP = 0.97  # share of the training rows' answerable searches the threshold keeps true (target 95% unseen)
VERSION = "confidence-v1"
# bm25_top is NaN by design (a raw BM25 score is the corpus's scale), so it carries nothing to learn.
TRAINED = tuple(f for f in FEATURES if f != "bm25_top")

Row = dict[str, Any]


def searched(retriever: Retriever, question: str, vectors: dict[str, np.ndarray], relevant: set[int], kind: str) -> Row:
    exclude = np.array(sorted(relevant), dtype=np.int64) if kind == "loo" else None
    answer = retriever.answer(question, 5, vectors=vectors, exclude=exclude)
    positions = {id(p): i for i, p in enumerate(retriever.index.passages)}
    found = kind == "own" and any(positions[id(h.passage)] in relevant for h in answer.hits)
    return {"kind": kind, "lang": detect_language(question), "label": int(found), "features": answer.confidence.features or {}}


def collect_public(settings: Settings, per_set: int, off_per_set: int, seed: int) -> list[Row]:
    """Every public row: own, loo and off searches on each corpus."""
    encoders = load_encoders(settings, progress=False)
    benches = {name: load_benchmark(DATA / name) for names in CORPORA.values() for name in names}
    rng = random.Random(seed)
    sample = {name: rng.sample(sorted(b.queries), min(per_set, len(b.queries))) for name, b in benches.items()}
    vectors: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    probe = Retriever(settings, encoders, index_in_memory(benches["cmrc2018_trial_para"].passages[:3], encoders, {}, progress=False))
    for name, ids in sample.items():
        for qid in ids:
            vectors[name, qid] = probe.query_vectors(benches[name].queries[qid])
    rows: list[Row] = []
    for corpus, names in CORPORA.items():
        started = time.perf_counter()
        bench = benches[names[0]]
        memory = index_in_memory(bench.passages, encoders, embedding_units_by_role(settings), progress=False)
        retriever = Retriever(settings, encoders, memory)
        by_id = {p.doc_id: i for i, p in enumerate(bench.passages)}
        for name in names:
            b = benches[name]
            for qid in sample[name]:
                relevant = {by_id[c] for c in b.qrels[qid] if c in by_id}
                for kind in ("own", "loo"):
                    row = searched(retriever, b.queries[qid], vectors[name, qid], relevant, kind)
                    rows.append(row | {"corpus": corpus, "set": name, "qid": qid})
        for other, other_names in CORPORA.items():
            if other in SAME_ARTICLES.get(corpus, {corpus}):
                continue
            for name in other_names:
                for qid in sample[name][:off_per_set]:
                    row = searched(retriever, benches[name].queries[qid], vectors[name, qid], set(), "off")
                    rows.append(row | {"corpus": corpus, "set": name, "qid": qid})
        print(f"{corpus}: {sum(r['corpus'] == corpus for r in rows)} searches in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return rows


def collect_project(settings: Settings, off_per_set: int, seed: int) -> list[Row]:
    """The own and held-out sets on the shipped corpus (own, loo, and their no-answer questions as
    `unanswered`), and public questions as off-topic ones. Measured, never trained on."""
    retriever = open_retriever(settings)
    texts = [squash(p.text) for p in retriever.index.passages]
    rows: list[Row] = []
    for path in (OWN, HOLDOUT):
        for q in load_questions(path):
            vectors = retriever.query_vectors(q.question)
            relevant = {int(i) for i in relevant_passages(q.answers, texts)}
            kinds = ("own", "loo") if relevant else ("unanswered",)
            for kind in kinds:
                row = searched(retriever, q.question, vectors, relevant, "own" if kind == "unanswered" else kind)
                rows.append(row | {"corpus": "project", "set": path.parent.name, "qid": q.id, "kind": kind, "answers": bool(q.answers)})
    rng = random.Random(seed)
    for name in ("cmrc2018_trial_para", "toyhom_title_public", "xquad_zh2zh_para", "xquad_en2zh_para"):
        bench = load_benchmark(DATA / name)
        for qid in rng.sample(sorted(bench.queries), off_per_set):
            text = bench.queries[qid]
            row = searched(retriever, text, retriever.query_vectors(text), set(), "off")
            rows.append(row | {"corpus": "project", "set": name, "qid": qid, "answers": False})
    return rows


# --- the model ------------------------------------------------------------------------------------


def matrix(rows: list[Row], features: Iterable[str], mean: np.ndarray | None = None) -> np.ndarray:
    x = np.array([[r["features"].get(f, np.nan) for f in features] for r in rows], dtype=np.float64)
    x = np.where(np.isfinite(x), x, np.nan)
    fill = np.nanmean(x, axis=0) if mean is None else mean
    return np.where(np.isnan(x), fill, x)


def fit(rows: list[Row], features: tuple[str, ...] = TRAINED, l2: float = 1.0) -> Model:
    """L2-regularised logistic regression by Newton's method on standardised features; each kind of
    negative weighs as much in total as the positives, so no one set's mix decides the prior."""
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
    model = Model(VERSION, features, mean, scale, w[1:], float(w[0]), 0.5, {})
    langs = {lang: threshold(model, [r for r in rows if r["lang"] == lang]) for lang in ("zh", "en")}
    return model._replace(threshold=threshold(model, rows), thresholds=langs)


def sample_weights(rows: list[Row]) -> np.ndarray:
    groups = [("pos" if r["label"] else r["kind"]) for r in rows]
    counts = {g: groups.count(g) for g in set(groups)}
    positives = counts.get("pos", 1)
    return np.array([positives / counts[g] for g in groups]) * len(rows) / (positives * len(counts))


def predict(model: Model, rows: list[Row]) -> np.ndarray:
    return np.array([model.probability(r["features"]) for r in rows])


def threshold(model: Model, rows: list[Row]) -> float:
    """The highest threshold (2 decimals) that keeps KEEP of the rows' answered searches true."""
    p = np.sort(predict(model, [r for r in rows if r["label"]]))
    return float(np.floor(p[int((1 - KEEP) * len(p))] * 100) / 100)


# --- reporting ------------------------------------------------------------------------------------


def rates(model: Model, rows: list[Row]) -> dict[str, Any]:
    """AUROC (answered vs not) and the flag's rates by kind of row, at the model's thresholds."""
    p = predict(model, rows)
    t = np.array([model.threshold_for(r["lang"]) for r in rows])
    y = np.array([r["label"] for r in rows])
    out: dict[str, Any] = {"auroc": auroc(p[y == 1].tolist(), p[y == 0].tolist()), "n": len(rows)}
    for kind, wanted in (("own", None), ("loo", False), ("off", False), ("unanswered", False)):
        picked = [i for i, r in enumerate(rows) if r["kind"] == kind]
        if picked:
            flags = p[picked] >= t[picked]
            out[kind] = (float(flags.mean()) if wanted is None else float(1 - flags.mean()), len(picked))
    answered = [i for i, r in enumerate(rows) if r["kind"] == "own" and r["label"]]
    if answered:
        out["answered"] = (float((p[answered] >= t[answered]).mean()), len(answered))
    return out


def fmt(cell: tuple[float, int] | None) -> str:
    return "-" if cell is None else f"{cell[0]:.2f} of {cell[1]}"


def thresholds(model: Model) -> str:
    return " / ".join(f"{lang} {v}" for lang, v in (model.thresholds or {}).items())


def report(model: Model, public: list[Row], project: list[Row]) -> str:
    lines = [
        "| rows | trained on | AUROC | own-corpus answered kept true | all own-corpus kept true | leave-one-out flagged false"
        " | off-topic flagged false | no-answer questions flagged false |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for corpus in CORPORA:
        train = [r for r in public if r["corpus"] != corpus]
        test = [r for r in public if r["corpus"] == corpus]
        fold = fit(train)
        r = rates(fold, test)
        lines.append(
            f"| {corpus} (held out) | other corpora, t {thresholds(fold)}"
            f" | {r['auroc']:.3f} | {fmt(r.get('answered'))} | {fmt(r.get('own'))}"
            f" | {fmt(r.get('loo'))} | {fmt(r.get('off'))} | - |"
        )
    r = rates(model, public)
    t = thresholds(model)
    lines.append(
        f"| all public (training rows) | all public, t {t} | {r['auroc']:.3f} | {fmt(r.get('answered'))} | {fmt(r.get('own'))}"
        f" | {fmt(r.get('loo'))} | {fmt(r.get('off'))} | - |"
    )
    for name in ("data", "holdout"):
        rows = [x for x in project if x["set"] == name or (x["kind"] == "off" and name == "data")]
        rows = [x for x in rows if x["kind"] != "off"] if name == "holdout" else rows
        kept = [x for x in rows if x["kind"] == "own"]
        r = rates(model, rows)
        flags = predict(model, kept) >= np.array([model.threshold_for(x["lang"]) for x in kept])
        label = "own set" if name == "data" else "held-out set"
        lines.append(
            f"| {label} on the shipped corpus (never trained on) | all public, t {t} | {r['auroc']:.3f} | {fmt(r.get('answered'))}"
            f" | {flags.mean():.2f} of {len(kept)} | {fmt(r.get('loo'))} | {fmt(r.get('off'))} | {fmt(r.get('unanswered'))} |"
        )
    return "\n".join(lines)


def load_or_collect(path: Path, make: Any) -> list[Row]:
    if path.exists():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    else:
        rows = make()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    for r in rows:  # rows cached before a question without keyword units counted as unknown (rag/confidence.py)
        if r["features"].get("log_units") == 0:
            r["features"] |= {"known": 0.0, "coverage": 0.0}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-set", type=int, default=300, help="questions sampled from each public set")
    parser.add_argument("--off-per-set", type=int, default=100, help="of those, asked against each other corpus as off-topic")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rag-confidence"), help="folder of cached rows")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--no-write", action="store_true", help="print only; leave the model and docs/quality.md alone")
    args = parser.parse_args()
    settings = Settings.from_env()
    tag = f"{args.per_set}-{args.off_per_set}-{args.seed}"
    public = load_or_collect(
        args.cache / f"public-{tag}.jsonl", lambda: collect_public(settings, args.per_set, args.off_per_set, args.seed)
    )
    project = load_or_collect(args.cache / f"project-{tag}.jsonl", lambda: collect_project(settings, args.off_per_set, args.seed))
    model = fit(public)
    sizes = {k: sum(r["kind"] == k for r in public) for k in ("own", "loo", "off")}
    trained_on = sorted(n for v in CORPORA.values() for n in v)
    model = model._replace(meta={"label": "a relevant passage in the top 5", "trained_on": trained_on, "rows": sizes})
    text = report(model, public, project)
    text += "\n\n" + ", ".join(f"{f} {c:+.2f}" for f, c in zip(model.features, model.coef, strict=True))
    print(text)
    if not args.no_write:
        save_model(model, DEFAULT_MODEL)
        update_doc(DOC, "bench/train_confidence.py", text, "The answerable flag")


if __name__ == "__main__":
    main()
