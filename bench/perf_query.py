"""Query path: where a warm search spends its time, in process and over HTTP.

In process (this interpreter, the live index): per question, each stage timed on its own, in the order
`Retriever.search` runs them: keyword tokens (jieba + CC-CEDICT expansion), e5 query embedding,
USE query embedding, the two FAISS searches, BM25, fusion, the `answerable` flag, hits + response
model, JSON serialisation.
"bare embedding" = e5 + USE query embedding (the floor). Then the whole `Retriever.search`.
Over HTTP: sequential POST /search to a real `rag serve` subprocess on 127.0.0.1 (keep-alive client),
for each server variant (see perf_common.LAUNCHERS), side by side with the bare embedding: question by
question, this process embeds the question (e5 + USE), then the server answers it, PAUSE_S apart.

    .venv/bin/python bench/perf_query.py [--rounds 5] [--variants plain,blas1,st] [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))
import http.client

from perf_common import ROOT, load_line, median, questions, start_server, stop_server, summary, table, write_section

if TYPE_CHECKING:
    from rag.retrieve import Retriever

# Between the bare embedding here and the round trip there (and back): OpenBLAS's threads spin for
# ~0.1 s after their last call, and on two cores one process's spinning threads doubled the other's
# time (bare 46 ms, HTTP 57 ms back to back; 25 / 29 ms with 0.2 s between; the ratio 1.15-1.23x either way).
PAUSE_S = 0.2

STAGES = [
    "tokens",
    "embed e5",
    "embed USE",
    "dense search x2",
    "keyword search",
    "fusion",
    "rerank",
    "answerable",
    "hits+response",
    "serialise",
]


def open_shipped() -> Retriever:
    from rag.cli import open_retriever
    from rag.config import Settings

    retriever = open_retriever(Settings.from_env(), build_if_missing=False)
    retriever.warm_up()  # as `rag serve` does once listening
    return retriever


def in_process(shipped: Retriever, rounds: int) -> tuple[dict[str, list[float]], list[float], list[float], list[float], list[float]]:
    from dataclasses import replace

    import numpy as np

    from rag import keyword, rerank
    from rag.encoders import PRIMARY, SECOND
    from rag.highlight import best_sentence
    from rag.retrieve import Answer, Hit, Retriever
    from rag.schema import to_response
    from rag.tokenize import detect_language

    settings = shipped.settings
    r = Retriever(replace(settings, rerank=True), shipped.encoders, shipped.index)  # with the learned ranker
    plain = Retriever(replace(settings, rerank=False), shipped.encoders, shipped.index)  # fusion's order, side by side
    uniform = Retriever(replace(settings, rerank=False, late_idf=False), shipped.encoders, shipped.index)  # MaxSim's plain mean
    qs = questions()
    stage: dict[str, list[float]] = {s: [] for s in STAGES}
    bare: list[float] = []
    whole: list[float] = []
    whole_plain: list[float] = []
    whole_uniform: list[float] = []
    for q in qs[:4]:
        r.search(q)  # warm-up
    for _ in range(rounds):
        for q in qs:
            index = r.index
            t0 = time.perf_counter()
            kw, units = r.keyword_query(q, index)
            t1 = time.perf_counter()
            v1 = r.encoders[PRIMARY].encode_queries([q])[0]
            t2 = time.perf_counter()
            v2 = r.encoders[SECOND].encode_queries([q])[0]
            t3 = time.perf_counter()
            lang = detect_language(q)
            rk = [r.dense_ranking(index, PRIMARY, v1), r.dense_ranking(index, SECOND, v2, settings.hub_penalty(lang))]
            t4 = time.perf_counter()
            rk.append(keyword.search(index.keyword, kw, settings.candidates))
            t5 = time.perf_counter()
            fused = r.fuse(rk, settings.weights(lang))
            t6r = time.perf_counter()
            ranked = fused
            if r.ranker is not None:
                vectors = {PRIMARY: v1, SECOND: v2}
                x = rerank.features_of(r, index, q, lang, rk, settings.weights(lang), fused, units, vectors, r.ranker.depth)
                ranked = rerank.reorder(r.ranker, lang, fused, x)
            t6 = time.perf_counter()
            confidence = r.confidence(index, lang, rk, settings.weights(lang), fused, units, {PRIMARY: v1, SECOND: v2}, None, q, kw)
            t6a = time.perf_counter()
            hits = [
                Hit(
                    i + 1,
                    float(s),
                    index.passages[p],
                    best_sentence(index.passages[p], kw, r.sentence_similarities(index, p, {PRIMARY: v1, SECOND: v2})),
                )
                for i, (p, s) in enumerate(zip(ranked.ids[:5].tolist(), ranked.scores[:5].tolist(), strict=True))
            ]
            resp = to_response(q, Answer(hits, confidence), 0.0)
            t7 = time.perf_counter()
            resp.model_dump_json()
            t8 = time.perf_counter()
            for name, a, b in zip(
                STAGES, [t0, t1, t2, t3, t4, t5, t6r, t6, t6a, t7], [t1, t2, t3, t4, t5, t6r, t6, t6a, t7, t8], strict=True
            ):
                stage[name].append((b - a) * 1000)
            bare.append((t3 - t1) * 1000)
            t = time.perf_counter()
            r.search(q)
            whole.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            plain.search(q)
            whole_plain.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            uniform.search(q)
            whole_uniform.append((time.perf_counter() - t) * 1000)
    del np
    return stage, bare, whole, whole_plain, whole_uniform


def first_seen_english(shipped: Retriever) -> tuple[list[float], list[float], int]:
    """The keyword side (jieba + translations) of the own set's English questions as if never asked: each
    with a fresh word cache and with one warmed as `rag serve` warms it (Retriever.warm_up), alternately;
    and how many of them got the same tokens both ways."""
    from rag.encoders import SECOND
    from rag.expand import EncoderSimilarity
    from rag.tokenize import detect_language

    use = shipped.encoders[SECOND]
    warmed = EncoderSimilarity(use)
    warmed.warm_for(shipped.index.vocabulary)
    own = [json.loads(line)["question"] for line in (ROOT / "tests" / "data" / "questions.jsonl").open(encoding="utf-8")]
    english = [q for q in own if detect_language(q) == "en"]
    saved = shipped.translation_similarity
    cold_ms, warm_ms, same = [], [], 0
    try:
        for q in english:
            shipped.translation_similarity = EncoderSimilarity(use)
            t = time.perf_counter()
            cold = shipped.keyword_query(q, shipped.index)
            cold_ms.append((time.perf_counter() - t) * 1000)
            copy = EncoderSimilarity(use)
            copy._vectors = dict(warmed._vectors)
            shipped.translation_similarity = copy
            t = time.perf_counter()
            warm = shipped.keyword_query(q, shipped.index)
            warm_ms.append((time.perf_counter() - t) * 1000)
            same += cold == warm
    finally:
        shipped.translation_similarity = saved
    return cold_ms, warm_ms, same


def http_round_trips(shipped: Retriever, base: str, rounds: int, took: list[float], bare: list[float]) -> list[float]:
    """Sequential POST /search round trips in ms, each after this process's bare embedding of the same
    question (into `bare`); `took` gets each answer's own took_ms (the search inside the server)."""
    from rag.encoders import PRIMARY, SECOND

    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    qs = questions()
    out = []
    for i in range(rounds * len(qs) + 4):
        q = qs[i % len(qs)]
        t = time.perf_counter()
        shipped.encoders[PRIMARY].encode_queries([q])
        shipped.encoders[SECOND].encode_queries([q])
        embedded = (time.perf_counter() - t) * 1000
        time.sleep(PAUSE_S)
        body = json.dumps({"question": q, "top_k": 5})
        t = time.perf_counter()
        conn.request("POST", "/search", body=body, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if i >= 4:
            out.append((time.perf_counter() - t) * 1000)
            took.append(float(json.loads(data)["took_ms"]))
            bare.append(embedded)
        assert resp.status == 200, resp.status
        time.sleep(PAUSE_S)
    conn.close()
    return out


def fmt(v: tuple[float, float, float]) -> list[str]:
    return [f"{x:.1f}" for x in v]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="passes over the 40 questions")
    parser.add_argument("--variants", default="plain,blas1,st")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    load_before = load_line()
    shipped = open_shipped()
    # Over HTTP first, each round trip side by side with the bare embedding of its question here (PAUSE_S);
    # in process after, on the same questions.
    round_trips, took, bare_beside = {}, {}, {}
    for variant in args.variants.split(","):
        proc, base, _ = start_server(variant)
        try:
            took[variant], bare_beside[variant] = [], []
            round_trips[variant] = http_round_trips(shipped, base, args.rounds, took[variant], bare_beside[variant])
        finally:
            stop_server(proc)
    stage, bare, whole, whole_plain, whole_uniform = in_process(shipped, args.rounds)
    cold_ms, warm_ms, same = first_seen_english(shipped)
    rows = [[s, *fmt(summary(v))] for s, v in stage.items()]
    rows.append(["**bare query embedding (e5 + USE)**", *fmt(summary(bare))])
    floor = median(bare)
    rows.append(["**Retriever.search (whole, in process), RAG_RERANK=1**", *fmt(summary(whole))])
    rows.append(["**Retriever.search, RAG_RERANK=0 (fusion's order, the default)**", *fmt(summary(whole_plain))])
    rows.append(["**Retriever.search, RAG_RERANK=0, RAG_LATE_IDF=0 (MaxSim's plain mean)**", *fmt(summary(whole_uniform))])
    http_rows = []
    for variant, rt in round_trips.items():
        p50, p95, p99 = summary(rt)
        beside = median(bare_beside[variant])
        paired = median([a / b for a, b in zip(rt, bare_beside[variant], strict=True)])
        ratios = f"{p50 / beside:.2f}x / {p99 / beside:.2f}x (question by question: {paired:.2f}x)"
        http_rows.append([f"HTTP POST /search, server `{variant}`", *fmt((p50, p95, p99)), ratios])
        inside = took[variant]
        label = f"  its searches inside the server (`took_ms`), `{variant}`"
        http_rows.append([label, *fmt(summary(inside)), f"{median(inside) / beside:.2f}x"])
        http_rows.append([f"  bare query embedding here, beside `{variant}`'s round trips", *fmt(summary(bare_beside[variant])), "1.00x"])
    n = len(bare)
    text = (
        f"{n} warm queries in process ({n // 2} Chinese, {n // 2} English questions from tests/data/questions.jsonl, top_k=5; "
        f"in process: the shipped encoders at default BLAS threads, e5 queries through the numpy path), measured after the same over HTTP, "
        f"where each round trip came {PAUSE_S} s after this process's bare embedding of its question (the ratios' floor). "
        f"Before: {load_before}; after: {load_line()}.\n\n"
        + table(["stage", "p50 ms", "p95 ms", "p99 ms"], rows)
        + f"\n\nWhole search p50 / bare embedding p50: {median(whole) / floor:.2f}x with the ranker, "
        f"{median(whole_plain) / floor:.2f}x without, {median(whole_uniform) / floor:.2f}x without and with MaxSim's plain mean "
        f"instead of idf weights (the three measured alternately, question by question).\n\n"
        + table(["HTTP round trip", "p50 ms", "p95 ms", "p99 ms", "p50 / p99 vs the bare-embedding p50 beside it"], http_rows)
        + f"\n\nThe keyword side of {len(cold_ms)} English questions (tests/data/questions.jsonl) as if never asked, "
        f"alternately with a fresh word cache and with the cache `rag serve` warms once listening (Retriever.warm_up: "
        f"the vocabulary's dictionary keys and candidates, rag/expand.py `similarity_words`); the same tokens both ways "
        f"for {same} of {len(cold_ms)}:\n\n"
        + table(
            ["keyword side of a first-seen English question", "p50 ms", "p95 ms", "p99 ms", "p50 vs bare-embedding p50"],
            [
                ["fresh word cache", *fmt(summary(cold_ms)), f"{median(cold_ms) / floor:.2f}x"],
                ["warmed word cache (shipped)", *fmt(summary(warm_ms)), f"{median(warm_ms) / floor:.2f}x"],
            ],
        )
        + "\n\nServers (bench/perf_common.py LAUNCHERS): `plain` is `rag serve` as shipped (BLAS threads at their default); "
        "`blas1` limits numpy's BLAS to one thread per process; `st` embeds e5 queries with sentence-transformers (torch, one thread).\n"
    )
    print(text)
    if args.write:
        write_section("query", "Query path: stages and HTTP round trip (`bench/perf_query.py`)", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
