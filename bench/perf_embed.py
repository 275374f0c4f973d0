"""Passage embedding speed: today's sentence-transformers fp32 `encode` against each candidate, side by side.

Every candidate embeds the same passages (the shipped corpus plus bench/corpus.py's generated one)
with the same model folder, in interleaved rounds, so a busy machine slows all of them alike; the
ratio to fp32 is taken within each round. Also: `rag index --full` end to end in fresh processes,
alternating the two engines, and single-query latency of the numpy and int8 query paths.
`--quality` instead measures nDCG@10 of fp32 vs int8 passage vectors on every public set (slow, ~15 min).

    .venv/bin/python bench/perf_embed.py [--documents 250] [--rounds 2] [--builds 2] [--quality] [--write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from doc_blocks import update_doc
from perf_common import DOC, ROOT, load_line, table

from corpus import generate

OUT = ROOT / "bench" / "out"
DATA = ROOT.parent / "shared" / "data"
SETS = ("xquad_en2zh_para", "xquad_zh2zh_para", "xquadr_en2zh_sent", "toyhom_title_public", "cmrc2018_trial_para")
Embed = Callable[[list[str]], np.ndarray]


def passages(documents: int) -> list[str]:
    """What a build embeds with e5: the shipped corpus's passages, then a generated corpus's."""
    from rag.chunk import chunk_document, embedding_units
    from rag.config import Settings
    from rag.ingest import load_corpus

    settings = Settings.from_env()
    generated = OUT / f"embed-corpus-{documents}"
    generate(generated, documents)
    texts: list[str] = []
    for folder in (settings.corpus_dir, generated):
        docs, _ = load_corpus(folder)
        texts += embedding_units([p for d in docs for p in chunk_document(d.id, d.text, settings.max_chars)], "passage")[0]
    return texts


def candidates(work: Path) -> tuple[dict[str, Embed], str]:
    """Name -> embed function over the same folder; the first is the baseline (today's build)."""
    import torch

    from rag.config import Settings
    from rag.encoders.batching import cores, length_batches
    from rag.encoders.onnx_int8 import OnnxInt8Bert, export_fp32, quantize
    from rag.encoders.sentence import SentenceEncoder

    settings = Settings.from_env()
    shipped = SentenceEncoder.from_settings(replace(settings, passage_engine="onnx-int8"), progress=False)
    one = SentenceEncoder.from_settings(replace(settings, passage_engine="onnx-int8", embed_threads=1), progress=False)
    st = SentenceEncoder.from_settings(replace(settings, passage_engine="sentence-transformers"), progress=False)
    folder, prompt = Path(st.path), settings.passage_prompt
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "int8-tensor.onnx").exists():
        export_fp32(folder, work / "fp32.onnx")
        quantize(work / "fp32.onnx", work / "int8-tensor.onnx", per_channel=False)
    ort_fp32 = OnnxInt8Bert(folder, work / "fp32.onnx", cores())  # the class runs any exported graph
    ort_tensor = OnnxInt8Bert(folder, work / "int8-tensor.onnx", cores())
    model = st.model

    def st_encode(texts: list[str], batch: int = 32) -> np.ndarray:
        return np.asarray(model.encode(texts, prompt=prompt, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True))

    def bf16(texts: list[str]) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return st_encode(texts)

    def st_budget(texts: list[str]) -> np.ndarray:
        lengths = [len(model.tokenizer(prompt + t)["input_ids"]) for t in texts]
        out = np.zeros((len(texts), st.dim), dtype=np.float32)
        for rows in length_batches(lengths):
            out[rows] = st_encode([texts[i] for i in rows], batch=len(rows))
        return out

    def prompted(enc: OnnxInt8Bert) -> Embed:
        return lambda texts: enc.encode([prompt + t for t in texts])

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = cores()
    _ = shipped.fast  # derives (or finds) the int8 file
    batched_session = ort.InferenceSession(str(shipped.fast_file), options, providers=["CPUExecutionProvider"])

    def int8_batched(texts: list[str]) -> np.ndarray:
        """The shipped int8 file, but in padded token-budget batches on one session with `cores` intra-op threads."""
        ids = [e.ids for e in shipped.fast.tokenizer.encode_batch([prompt + t for t in texts])]
        out = np.zeros((len(texts), st.dim), dtype=np.float32)
        for rows in length_batches([len(i) for i in ids]):
            tokens = np.zeros((len(rows), len(ids[rows[0]])), dtype=np.int64)
            mask = np.zeros_like(tokens)
            for r, i in enumerate(rows):
                tokens[r, : len(ids[i])], mask[r, : len(ids[i])] = ids[i], 1
            out[rows] = batched_session.run(None, {"input_ids": tokens, "attention_mask": mask})[0]
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    threads = f"torch {torch.get_num_threads()} threads by default, {cores()} cores"
    return {
        "sentence-transformers fp32 `encode`, batch 32 (today)": st_encode,
        "sentence-transformers bf16 autocast": bf16,
        "sentence-transformers fp32, token-budget batches": st_budget,
        "shipped engine `sentence-transformers` (sorted chunks, threads = cores)": st.encode_passages,
        "ONNX Runtime fp32 (same export), one text per run, runs = cores": prompted(ort_fp32),
        "ONNX Runtime int8 per-tensor, one text per run, runs = cores": prompted(ort_tensor),
        "ONNX Runtime int8 per-channel, token-budget batches, intra-op threads = cores": int8_batched,
        "ONNX Runtime int8 per-channel, one text per run, 1 run at a time": one.encode_passages,
        "**shipped `onnx-int8`** (int8 per-channel, one text per run, runs = cores)": shipped.encode_passages,
    }, threads


def speed(texts: list[str], embeds: dict[str, Embed], rounds: int) -> list[list[str]]:
    """Rows of passages/s (wall, median of rounds), ratio to the baseline within each round, cosines."""
    names = list(embeds)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    vectors: dict[str, np.ndarray] = {}
    for n in names:
        embeds[n](texts[:8])  # warm-up: first-call allocations, lazy sessions
    for r in range(rounds):
        for n in names:
            t, c = time.perf_counter(), time.process_time()
            v = embeds[n](texts)
            wall[n].append(time.perf_counter() - t)
            cpu[n].append(time.process_time() - c)
            vectors.setdefault(n, np.asarray(v, dtype=np.float32))
            print(f"round {r + 1}: {n}: {len(texts) / wall[n][-1]:.1f} passages/s", flush=True)
    base = names[0]
    rows = []
    for n in names:
        ratio = statistics.median(wall[base][i] / wall[n][i] for i in range(rounds))
        cos = (vectors[n] * vectors[base]).sum(1)
        rows.append([
            n, f"{len(texts) / statistics.median(wall[n]):.1f}", f"{len(texts) / statistics.median(cpu[n]):.1f}",
            f"{ratio:.2f}x", f"{cos.mean():.4f}", f"{cos.min():.4f}",
        ])  # fmt: skip
    return rows


def build_once(corpus: Path, engine: str) -> tuple[float, float]:
    """(whole build s, e5 embedding stage s) of one `rag index --full` in a fresh process."""
    index = Path(tempfile.mkdtemp(prefix="embed-index-", dir=OUT))
    env = os.environ | {"HF_HUB_OFFLINE": "1", "RAG_PASSAGE_ENGINE": engine}
    return timed_build(["--corpus", str(corpus), "--index", str(index)], env, index)


def timed_build(args: list[str], env: dict[str, str], index: Path) -> tuple[float, float]:
    """Run `rag index --full ARGS` in a fresh process: (whole build s, e5 stage s, from its stage lines); `index` is removed after."""
    cmd = [sys.executable, "-m", "rag.cli", "index", "--full", *args]
    started = time.perf_counter()
    marks: dict[str, float] = {}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    assert proc.stderr is not None
    for line in proc.stderr:  # stage lines end in newlines; tqdm's \r updates ride along
        if "rag index: embedding" in line and "(primary)" in line:
            marks["e5"] = time.perf_counter()
        elif "rag index: embedding" in line and "(second)" in line:
            marks["use"] = time.perf_counter()
    if proc.wait() != 0:
        raise RuntimeError(f"rag index failed with {proc.returncode}")
    subprocess.run(["rm", "-rf", str(index)], check=False)
    return time.perf_counter() - started, marks["use"] - marks["e5"]


def builds(corpus: Path, n: int, repeats: int) -> list[list[str]]:
    """Full builds alternating fp32 and int8, so both see the same load; medians."""
    runs: dict[str, list[tuple[float, float]]] = {"sentence-transformers": [], "onnx-int8": []}
    for _ in range(repeats):
        for engine in runs:
            runs[engine].append(build_once(corpus, engine))
            print(f"full build, {engine}: {runs[engine][-1][0]:.1f} s (e5 stage {runs[engine][-1][1]:.1f} s)", flush=True)
    base = runs["sentence-transformers"]
    rows = []
    for engine, rs in runs.items():
        total, stage = statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)
        ratio = statistics.median(base[i][1] / rs[i][1] for i in range(repeats))
        runs_s = " / ".join(f"{r[0]:.1f}" for r in rs)
        name = f"`RAG_PASSAGE_ENGINE={engine}`"
        rows.append([name, str(n), f"{total:.1f} ({runs_s})", f"{stage:.1f}", f"{n / stage:.1f}", f"{ratio:.2f}x"])
    return rows


def query_latency() -> list[list[str]]:
    """Single-question latency of the shipped numpy query path vs the int8 ONNX session, and their agreement."""
    from perf_common import questions

    from rag.config import Settings
    from rag.encoders.sentence import SentenceEncoder

    enc = SentenceEncoder.from_settings(Settings.from_env(), progress=False)
    qs = questions(20)
    paths: dict[str, Embed] = {
        "numpy fp32 (shipped, rag/encoders/bert_numpy.py)": enc.encode_queries,
        "ONNX Runtime int8": lambda t: enc.fast.encode([enc.query_prompt + x for x in t]),
    }
    rows, first = [], None
    for name, fn in paths.items():
        fn(qs[:1])
        times, vecs = [], []
        for q in qs:
            t = time.perf_counter()
            vecs.append(fn([q])[0])
            times.append((time.perf_counter() - t) * 1000)
        v = np.asarray(vecs)
        first = v if first is None else first
        cos = (v * first).sum(1)
        rows.append([name, f"{statistics.median(times):.1f}", f"{cos.mean():.4f}", f"{cos.min():.4f}"])
    return rows


def quality(limit: int | None) -> list[list[str]]:
    """nDCG@10 per public set: fused (the product's ranking) and e5 alone, fp32 vs int8 passages."""
    from rag import dense
    from rag.beir import index_in_memory, load_benchmark
    from rag.config import Settings
    from rag.encoders import PRIMARY, load_encoders
    from rag.evaluate import ndcg_at
    from rag.index import embedding_units_by_role
    from rag.retrieve import Retriever
    from rag.store.local import LocalStore
    from rag.tokenize import detect_language

    settings = replace(Settings.from_env(), passage_engine="sentence-transformers")
    encoders = load_encoders(settings, progress=False)
    fast = load_encoders(replace(settings, passage_engine="onnx-int8", second_model=""), progress=False)[PRIMARY]
    rows = []
    for name in SETS:
        bench = load_benchmark(DATA / name)
        fp32 = index_in_memory(bench.passages, encoders, embedding_units_by_role(settings), progress=False)
        texts = [p.text for p in bench.passages]
        int8_vectors = fast.encode_passages(texts)
        cos = (int8_vectors * fp32.embeddings[PRIMARY]).sum(1)
        faiss_by_role = {role: dense.build(m) for role, m in (fp32.embeddings | {PRIMARY: int8_vectors}).items()}
        int8 = replace(fp32, embeddings=fp32.embeddings | {PRIMARY: int8_vectors}, store=LocalStore(faiss_by_role, fp32.keyword))
        retriever = Retriever(settings, encoders, fp32)
        by_id = {p.doc_id: str(i) for i, p in enumerate(bench.passages)}
        queries = dict(list(bench.queries.items())[:limit]) if limit else bench.queries
        scores: dict[str, list[float]] = {k: [] for k in ("fused fp32", "fused int8", "e5 fp32", "e5 int8", "fused int8 q")}
        for qid, text in queries.items():
            relevant = {by_id[c] for c in bench.qrels[qid] if c in by_id}
            keywords = retriever.keyword_tokens(text, fp32)
            vectors = retriever.query_vectors(text)
            weights = settings.weights(detect_language(text))
            q8 = vectors | {PRIMARY: e5_fast_query(fast, text)}
            for label, index, vecs in (("fp32", fp32, vectors), ("int8", int8, vectors), ("int8 q", int8, q8)):
                ranks = retriever.rankings(text, index, keywords, vecs)
                fused = [str(i) for i in retriever.fuse(ranks, weights).ids[:10].tolist()]
                scores[f"fused {label}"].append(ndcg_at(fused, relevant, 10))
                if label != "int8 q":
                    scores[f"e5 {label}"].append(ndcg_at([str(i) for i in ranks[0].ids[:10].tolist()], relevant, 10))
        m = {k: float(np.mean(v)) for k, v in scores.items()}
        rows.append([
            name, str(len(queries)), f"{m['fused fp32']:.4f}", f"{m['fused int8']:.4f}", f"{m['fused int8'] - m['fused fp32']:+.4f}",
            f"{m['e5 fp32']:.4f}", f"{m['e5 int8']:.4f}", f"{m['e5 int8'] - m['e5 fp32']:+.4f}",
            f"{m['fused int8 q'] - m['fused fp32']:+.4f}", f"{cos.mean():.4f}", f"{cos.min():.4f}",
        ])  # fmt: skip
        print(table(QUALITY_HEADER, rows[-1:]), flush=True)
    return rows


def e5_fast_query(fast: object, text: str) -> np.ndarray:
    """A question through the int8 passage engine instead of numpy fp32 (to judge the query path)."""
    return np.asarray(fast.fast.encode([fast.query_prompt + text]))[0]  # type: ignore[attr-defined]


QUALITY_HEADER = [
    "set", "questions", "nDCG@10 fused fp32", "fused int8", "Δ fused", "e5 alone fp32", "e5 alone int8", "Δ e5",
    "Δ fused, int8 queries too", "cosine mean", "cosine min",
]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=250, help="generated documents added to the shipped corpus")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--builds", type=int, default=2, help="full builds per engine (0 = skip)")
    parser.add_argument("--quality", action="store_true", help="also nDCG@10 fp32 vs int8 on every public set (slow)")
    parser.add_argument("--limit", type=int, default=None, help="questions per set in --quality")
    parser.add_argument("--write", action="store_true", help="write the tables into docs/performance.md")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    before = load_line()
    if args.quality:
        rows = quality(args.limit)
        text = (
            "Retrieval quality on the public sets (../shared/data, every question unless noted), fp32 vs int8 passage "
            "vectors of e5 (USE and BM25 as shipped); queries through the shipped numpy fp32 path, and in the "
            f"last Δ column through the int8 session too. Before: {before}; after: {load_line()}.\n\n" + table(QUALITY_HEADER, rows) + "\n"
        )
    else:
        text = speed_report(args, before)
    print(text)
    if args.write:
        key, title = ("bench/perf_embed:quality", " --quality") if args.quality else ("bench/perf_embed", "")
        update_doc(DOC, key, f"### Measured (`bench/perf_embed.py{title}`)\n\n{text}", "Performance")
    return 0


def speed_report(args: argparse.Namespace, before: str) -> str:
    texts = passages(args.documents)
    embeds, threads = candidates(OUT / "embed-models")
    speed_rows = speed(texts, embeds, args.rounds)
    header = ["candidate", "passages/s (wall)", "passages per CPU-second", "speed-up vs today (per round)", "cosine to fp32 mean", "min"]
    text = (
        f"{len(texts)} passages (the shipped corpus plus {args.documents} generated documents, bench/corpus.py), "
        f"multilingual-e5-small from the converted folder, {args.rounds} interleaved rounds (median), {threads}. "
        f"Before: {before}; after: {load_line()}.\n\n" + table(header, speed_rows) + "\n"
    )
    if args.builds:
        corpus = OUT / f"embed-corpus-{args.documents}"
        rows = builds(corpus, count_passages(corpus), args.builds)
        text += (
            f"\n`rag index --full` end to end over the generated corpus ({args.builds} runs per engine in fresh processes, "
            "alternating; the e5 stage, timed from the build's own stage lines, includes loading the encoders):\n\n"
            + table(["engine", "passages", "whole build s (runs)", "e5 stage s", "e5 passages/s", "e5 stage speed-up"], rows)
            + "\n"
        )
    text += "\nSingle-question latency (median over 40 questions) and agreement with the shipped path:\n\n"
    return text + table(["query path", "ms", "cosine mean", "min"], query_latency()) + "\n"


def count_passages(corpus: Path) -> int:
    from rag.chunk import chunk_document
    from rag.config import Settings
    from rag.ingest import load_corpus

    docs, _ = load_corpus(corpus)
    return sum(len(chunk_document(d.id, d.text, Settings.from_env().max_chars)) for d in docs)


if __name__ == "__main__":
    raise SystemExit(main())
