"""The calibrated `confidence`: the shipped model file, its features, AUROC, the leave-one-out hook,
`--negatives`, and how it behaves on the real corpus (floors, not timings)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag.beir import index_in_memory, load_benchmark
from rag.confidence import DEFAULT_MODEL, FEATURES, load_model, save_model, signal_features
from rag.config import Settings
from rag.encoders import Encoder
from rag.errors import RagError
from rag.evaluate import auroc, evaluate_benchmark, format_table
from rag.fusion import Ranking
from rag.index import embedding_units_by_role
from rag.retrieve import Retriever
from rag.tokenize import detect_language

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "beir-sample"


def test_the_shipped_model_names_its_version_and_features() -> None:
    data = json.loads(DEFAULT_MODEL.read_text(encoding="utf-8"))
    assert data["version"].startswith("confidence-v") and data["kind"] == "trees"
    assert set(data["features"]) <= set(FEATURES) and len(data["mean"]) == len(data["features"])
    assert set(data["thresholds"]) == {"zh", "en"} and all(0 < t < 1 for t in data["thresholds"].values())
    assert DEFAULT_MODEL.stat().st_size < 300_000  # some thousand tree nodes (v5: 300 trees of depth 4, 229 KB), nothing opaque
    model = load_model()
    assert model.forest is not None and len(model.forest.roots) == data["boosting"]["max_iter"]


def test_probability_is_in_0_1_and_missing_features_count_as_average(tmp_path: Path) -> None:
    model = load_model()
    assert 0 <= model.probability({}) <= 1
    average = dict(zip(model.features, model.mean.tolist(), strict=True))
    assert model.probability({}) == pytest.approx(model.probability(average))
    assert model.probability({f: math.nan for f in model.features}) == pytest.approx(model.probability({}))
    path = tmp_path / "m.json"
    save_model(model, path)
    again = load_model(str(path))
    rng = np.random.default_rng(0)
    for _ in range(50):
        values = dict(zip(model.features, (model.mean * rng.uniform(0, 2, len(model.features))).tolist(), strict=True))
        assert again.probability(values) == pytest.approx(model.probability(values), abs=1e-6)


def test_the_exported_trees_give_scikit_learns_probabilities() -> None:
    """bench/train_confidence.py's export, evaluated by rag/trees.py, against the library that fitted it."""
    sklearn = pytest.importorskip("sklearn.ensemble")
    sys.path.insert(0, str(ROOT / "bench"))
    from train_confidence import export

    from rag.confidence import Model

    rng = np.random.default_rng(1)
    x = rng.normal(size=(600, 4))
    y = (x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(scale=0.5, size=600) > 0).astype(int)
    clf = sklearn.HistGradientBoostingClassifier(max_iter=30, max_depth=3, random_state=0).fit(x, y)
    names = ("en", "known", "coverage", "sentence")
    model = Model("t", names, x.mean(axis=0), np.ones(4), np.zeros(4), 0.0, 0.5, {}, forest=export(clf))
    test = rng.normal(size=(200, 4))
    ours = [model.probability(dict(zip(names, row.tolist(), strict=True))) for row in test]
    assert ours == pytest.approx(clf.predict_proba(test)[:, 1].tolist(), abs=1e-9)


def test_an_index_built_for_another_confidence_model_says_so(retriever: Retriever, capsys: pytest.CaptureFixture[str]) -> None:
    assert retriever.index.manifest["confidence"]["version"] == retriever.model.version
    capsys.readouterr()
    retriever.check_confidence_model(retriever.index)
    assert capsys.readouterr().err == ""
    old = replace(retriever.index, manifest=retriever.index.manifest | {"confidence": {"version": "confidence-v0"}})
    retriever.check_confidence_model(old)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "confidence-v0" in err and retriever.model.version in err and "rag index --full" in err


def test_a_malformed_forest_is_a_clear_error(tmp_path: Path) -> None:
    data = json.loads(DEFAULT_MODEL.read_text(encoding="utf-8"))
    for damage in ({"left": [-5] * len(data["forest"]["left"])}, {"feature": [99] * len(data["forest"]["feature"])}, {"value": [1.0]}):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(data | {"forest": data["forest"] | damage}), encoding="utf-8")
        with pytest.raises(RagError, match="RAG_CONFIDENCE_MODEL"):
            load_model(str(bad))


def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "logistic", "features": ["en"], "mean": [0, 1]}', encoding="utf-8")
    with pytest.raises(RagError, match="RAG_CONFIDENCE_MODEL"):
        load_model(str(bad))
    with pytest.raises(RagError, match="not a confidence model"):
        load_model(str(tmp_path / "missing.json"))


def test_signal_features_do_not_depend_on_the_scale_of_bm25() -> None:
    ranking = Ranking(np.array([3, 1, 2], dtype=np.int64), np.array([9.0, 3.0, 1.0], dtype=np.float32))
    scaled = Ranking(ranking.ids, ranking.scores * 10)
    one, ten = signal_features("bm25", ranking, 3, 100), signal_features("bm25", scaled, 3, 100)
    assert math.isnan(one["bm25_top"])  # BM25's raw score grows with the corpus
    assert {k: v for k, v in one.items() if k != "bm25_top"} == pytest.approx({k: v for k, v in ten.items() if k != "bm25_top"})
    assert one["bm25_logrank"] == 0.0
    assert signal_features("e5", ranking, 2, 100)["e5_logrank"] == pytest.approx(math.log(3))
    assert all(math.isnan(v) for v in signal_features("use", None, 3, 100).values())  # the signal took no part


def test_auroc_counts_pairs_and_ties() -> None:
    assert auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auroc([0.1], [0.9]) == 0.0
    assert auroc([0.5, 0.5], [0.5]) == 0.5
    assert auroc([0.9, 0.4], [0.5, 0.1]) == 0.75
    assert math.isnan(auroc([], [0.1]))


def test_threshold_and_retired_rule_come_from_settings(retriever: Retriever) -> None:
    always = Retriever(replace(retriever.settings, confidence_threshold=0.0), retriever.encoders, retriever.index)
    assert always.answer("红烧肉怎么做", 3).confidence.answerable
    never = Retriever(replace(retriever.settings, confidence_threshold=1.01), retriever.encoders, retriever.index)
    assert not never.answer("外国人可以用哪些证件绑定医保电子凭证", 3).confidence.answerable
    # RAG_ANSWERABLE_ZH, when set, decides Chinese questions by the old rule; the confidence is still there.
    legacy = Retriever(replace(retriever.settings, answerable_zh="0,1.01"), retriever.encoders, retriever.index)
    c = legacy.answer("外国人可以用哪些证件绑定医保电子凭证", 3).confidence
    assert c.answerable == (c.disagreement <= 0) and 0 <= c.confidence <= 1
    with pytest.raises(RagError, match="RAG_CONFIDENCE_MODEL"):
        Retriever(replace(retriever.settings, confidence_model="/nonexistent.json"), retriever.encoders, retriever.index)


def test_settings_read_the_threshold_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_CONFIDENCE_THRESHOLD", "0.3")
    assert Settings.from_env().confidence_threshold == 0.3


def test_excluded_passages_leave_every_ranking(retriever: Retriever) -> None:
    question = "外国人可以用哪些证件绑定医保电子凭证"
    full = retriever.answer(question, 5)
    top = next(i for i, p in enumerate(retriever.index.passages) if p is full.hits[0].passage)
    masked = retriever.answer(question, 5, exclude=np.array([top]))
    assert all(h.passage is not full.hits[0].passage for h in masked.hits)
    assert masked.hits[0].passage is full.hits[1].passage or len(masked.hits) == 5
    assert masked.confidence.confidence < full.confidence.confidence


OFF_TOPIC = ["红烧肉怎么做", "🍜🍜🍜", "香蕉", "hello", "今天上海天气怎么样", "Who won the 2018 World Cup?", "什么是量子纠缠"]


@pytest.mark.parametrize("question", OFF_TOPIC)
def test_off_topic_questions_have_low_confidence(retriever: Retriever, question: str) -> None:
    c = retriever.answer(question, 5).confidence
    assert 0 <= c.confidence < retriever.threshold(detect_language(question)) and not c.answerable, c.features


@pytest.mark.parametrize("question", ["Can a foreigner activate it through Alipay?", "亲情账户最多可以绑定几个人"])
def test_answered_questions_have_high_confidence(retriever: Retriever, question: str) -> None:
    c = retriever.answer(question, 5).confidence
    assert c.answerable and retriever.threshold(detect_language(question)) <= c.confidence <= 1


@pytest.mark.slow
def test_negatives_are_asked_as_unanswerable(retriever: Retriever, encoders: dict[str, Encoder], tmp_path: Path) -> None:
    bench = load_benchmark(SAMPLE)
    memory = index_in_memory(bench.passages, encoders, embedding_units_by_role(retriever.settings), progress=False)
    negatives = {"n1": "红烧肉怎么做", "n2": "Who won the 2018 World Cup?", "n3": "什么是量子纠缠"}
    report = evaluate_benchmark(Retriever(retriever.settings, encoders, memory), bench.queries, bench.qrels, negatives=negatives)
    assert report["overall"]["questions"] == len(bench.queries)
    # English trivia clears the threshold since the English query adapter made e5 sharper (docs/quality.md, confidence-v3)
    assert report["unanswerable"]["questions"] == 3 and report["unanswerable"]["flagged_false"] >= 2
    assert report["confidence"]["auroc"] >= 0.9
    assert "confidence AUROC" in format_table(report)
    folder = tmp_path / "neg"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text('{"_id": "x", "text": "无关"}\n', encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in negatives.items()), encoding="utf-8")
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{k}\tx\t1\n" for k in negatives), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "rag.cli", "eval", "--beir", str(SAMPLE), "--negatives", str(folder), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["unanswerable"]["questions"] == 3
