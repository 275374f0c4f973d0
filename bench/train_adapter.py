"""Train the English query adapter (rag/encoders/adapter.py) on public data, and report it.

A LoRA update of e5's linear layers is fitted so that English questions land nearer their
Chinese passages: the loss is the softmax over every passage of the question's own corpus
(temperature `--tau`), with passage vectors frozen as `rag index` embeds them (int8 engine).
Only the public English -> Chinese sets train it (xquad's 1,190 questions against its paragraphs
and against its sentences); the project's own and held-out questions never do.

`--report` measures, through the product's own search (the adapter merged by rag/encoders/):
- held-out articles: adapters fitted on xquad's even articles answer the odd ones' questions
  against the odd articles' corpora, and the other way round (so no question, passage or
  article it was trained on is searched); these two fold adapters are kept in `--folds` for
  bench/train_confidence.py, whose xquad English rows must not come from an adapter that saw them;
- the shipped adapter on the own set's English questions (and on the held-out set: a check).

    .venv/bin/python bench/train_adapter.py            # fit on every xquad article, write rag/models/
    .venv/bin/python bench/train_adapter.py --report   # also the measurements above (~15 min)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from eng_harness import Memo, own_set  # noqa: E402

from rag.beir import Benchmark, index_in_memory, load_benchmark  # noqa: E402
from rag.chunk import embedding_units  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.encoders import PRIMARY, SECOND, Encoder, adapter, load_encoders  # noqa: E402
from rag.evaluate import evaluate_benchmark  # noqa: E402
from rag.index import embedding_units_by_role, load_index  # noqa: E402
from rag.retrieve import Retriever  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SETS = ("xquad_en2zh_para", "xquadr_en2zh_sent")
TARGETS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense")
TARGETS += ("intermediate.dense", "output.dense")
VERSION = "query-adapter-en-v2"


def article(corpus_id: str) -> int:
    """xquad's corpus ids are a<article>p<paragraph>[s<sentence>]."""
    found = re.match(r"a(\d+)", corpus_id)
    return int(found.group(1)) if found else -1


def half(bench: Benchmark, parity: int | None) -> Benchmark:
    """The benchmark restricted to articles of one parity (None: all of it)."""
    if parity is None:
        return bench
    passages = [p for p in bench.passages if article(p.doc_id) % 2 == parity]
    keep = {p.doc_id for p in passages}
    qrels = {q: rel & keep for q, rel in bench.qrels.items() if rel & keep}
    return Benchmark(f"{bench.name}-{'odd' if parity else 'even'}", passages, {q: bench.queries[q] for q in qrels}, qrels)


class LoRA:
    """Builds the torch side: the model with trainable low-rank updates on the target layers."""

    def __init__(self, folder: Path, rank: int, targets: tuple[str, ...], seed: int):
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.manual_seed(seed)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.scale = 2.0  # alpha / rank, alpha = 2 x rank
        self.factors: dict[str, tuple[Any, Any]] = {}
        for name, module in list(self.model.named_modules()):
            if isinstance(module, torch.nn.Linear) and ".layer." in name and name.split(".layer.")[1].split(".", 1)[1] in targets:
                a = torch.nn.Parameter(torch.randn(rank, module.in_features) / math.sqrt(module.in_features))
                b = torch.nn.Parameter(torch.zeros(module.out_features, rank))
                self.factors[name + ".weight"] = (a, b)
                module.register_forward_hook(lambda mod, inp, out, a=a, b=b: out + (inp[0] @ a.T @ b.T) * self.scale)

    def parameters(self) -> list[Any]:
        return [t for pair in self.factors.values() for t in pair]

    def encode(self, texts: list[str], prompt: str) -> Any:
        batch = self.tokenizer([prompt + t for t in texts], padding=True, truncation=True, max_length=128, return_tensors="pt")
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return self.torch.nn.functional.normalize(pooled, dim=-1)


def training_examples(benches: list[Benchmark], memo: Encoder, units: str) -> list[tuple[Any, list[tuple[str, list[int]]]]]:
    """Per corpus: its frozen passage matrix and (question, rows of its relevant passages)."""
    import torch

    out = []
    for bench in benches:
        texts, owners = embedding_units(bench.passages, units)
        matrix = torch.from_numpy(memo.encode_passages(texts))
        row = {p.doc_id: i for i, p in enumerate(bench.passages)}
        examples = []
        for qid, question in bench.queries.items():
            rows = np.flatnonzero(np.isin(owners, [row[d] for d in bench.qrels[qid] if d in row])).tolist()
            if rows:
                examples.append((question, rows))
        out.append((matrix, examples))
    return out


def fit(folder: Path, data: list[Any], args: argparse.Namespace, prompt: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Trains the updates; returns weight name -> (A, B) with the scale folded into B."""
    import torch

    random.seed(args.seed)
    lora = LoRA(folder, args.rank, args.targets, args.seed)
    batches = [
        (m, ex[i : i + args.batch]) for m, exs in data for ex in [random.sample(exs, len(exs))] for i in range(0, len(ex), args.batch)
    ]
    total = int(len(batches) * args.epochs)
    optimiser = torch.optim.AdamW(lora.parameters(), lr=args.lr, weight_decay=0.0)
    started, step = time.time(), 0
    lora.model.train()
    while step < total:
        random.shuffle(batches)
        for matrix, batch in batches[: total - step]:
            logits = lora.encode([q for q, _ in batch], prompt) @ matrix.T / args.tau
            relevant = torch.zeros_like(logits, dtype=torch.bool)
            for i, (_, rows) in enumerate(batch):
                relevant[i, rows] = True
            loss = (torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~relevant, -1e9), 1)).mean()
            for group in optimiser.param_groups:  # warm-up, then linear decay
                group["lr"] = args.lr * min(1.0, (step + 1) / 20) * max(0.0, 1 - step / total)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            if step % 20 == 0 or step == total:
                print(f"  step {step}/{total}  loss {loss.item():.3f}  {time.time() - started:.0f} s", flush=True)
    return {name: (a.detach().numpy(), (b.detach() * lora.scale).numpy()) for name, (a, b) in lora.factors.items()}


def fit_second(benches: list[Benchmark], memo: Encoder, args: argparse.Namespace) -> np.ndarray:
    """The second encoder's English query map M (v -> v + v @ M, renormalised), fitted like the LoRA:
    softmax over each corpus's frozen sentence vectors (USE embeds sentences), Adam, L2 on M."""
    import torch

    torch.manual_seed(args.seed)
    data = []
    for bench in benches:
        texts, owners = embedding_units(bench.passages, "sentence")
        matrix = torch.from_numpy(memo.encode_passages(texts))
        row = {p.doc_id: i for i, p in enumerate(bench.passages)}
        ids = sorted(bench.queries)
        queries = torch.from_numpy(memo.encode_queries([bench.queries[q] for q in ids]))
        relevant = torch.zeros(len(ids), len(texts), dtype=torch.bool)
        for i, qid in enumerate(ids):
            relevant[i, np.flatnonzero(np.isin(owners, [row[d] for d in bench.qrels[qid] if d in row]))] = True
        keep = relevant.any(1)
        data.append((queries[keep], matrix, relevant[keep]))
    m = torch.zeros(memo.dim, memo.dim, requires_grad=True)
    optimiser = torch.optim.Adam([m], lr=1e-3)
    for _ in range(args.second_epochs):
        for queries, matrix, relevant in data:
            for batch in torch.randperm(len(queries)).split(64):
                q = torch.nn.functional.normalize(queries[batch] + queries[batch] @ m, dim=-1)
                logits = q @ matrix.T / args.second_tau
                picked = logits.masked_fill(~relevant[batch], -1e9)
                loss = (torch.logsumexp(logits, 1) - torch.logsumexp(picked, 1)).mean() + args.second_l2 * (m**2).sum()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    print(f"  second encoder's map: loss {loss.item():.3f}", flush=True)
    return m.detach().numpy()


def lora_factors(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """The (A, B) factors and meta of an adapter file already written (for --second-only)."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        names = sorted({n.rsplit(".", 1)[0] for n in data.files if n.endswith((".A", ".B"))})
        return {n: (data[n + ".A"].astype(np.float32), data[n + ".B"].astype(np.float32)) for n in names}, meta


def train(settings: Settings, memo: dict[str, Encoder], args: argparse.Namespace, parity: int | None, out: Path) -> None:
    folder = Path(memo[PRIMARY].inner.path)  # type: ignore[attr-defined]
    benches = [half(load_benchmark(DATA / name), parity) for name in args.sets]
    if args.second_only:  # the e5 part as it is in `out`, only the second encoder's map fitted again
        factors, meta = lora_factors(out)
    else:
        data = training_examples(benches, memo[PRIMARY], embedding_units_by_role(settings).get(PRIMARY, "passage"))
        print(f"training on {sum(len(e) for _, e in data)} questions of {', '.join(b.name for b in benches)}", flush=True)
        factors = fit(folder, data, args, settings.query_prompt)
        meta = {"base": adapter.source_of(folder), "rank": args.rank, "scale": args.strength}
        meta |= {"trained_on": [b.name for b in benches], "epochs": args.epochs, "lr": args.lr, "tau": args.tau}
    second = fit_second(benches, memo[SECOND], args) if SECOND in memo and args.second_strength > 0 else None
    meta = {k: v for k, v in meta.items() if k != "kind"} | {"version": VERSION}
    if second is not None:
        meta |= {"second_scale": args.second_strength, "second_epochs": args.second_epochs, "second_tau": args.second_tau}
        meta |= {"second_l2": args.second_l2}
    adapter.save(out, factors, meta, second)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)", flush=True)


def encoders_for(settings: Settings, memo: dict[str, Encoder]) -> dict[str, Encoder]:
    """e5's queries as `settings` say (adapter or not), its passages and the other encoders from the memo."""
    from rag.encoders.sentence import SentenceEncoder

    queries = SentenceEncoder.from_settings(settings, progress=False)
    second = queries.query_adapter.second if queries.query_adapter is not None else None
    out: dict[str, Encoder] = {PRIMARY: _PassagesFrom(queries, memo[PRIMARY])}
    if SECOND in memo:
        out[SECOND] = memo[SECOND] if second is None else _Mapped(memo[SECOND], second)  # type: ignore[assignment]
    return out


def searched(settings: Settings, encoders: dict[str, Encoder], bench: Benchmark) -> float:
    """MRR@10 of the product's search on a benchmark."""
    index = index_in_memory(bench.passages, encoders, embedding_units_by_role(settings), progress=False)
    return float(evaluate_benchmark(Retriever(settings, encoders, index), bench.queries, bench.qrels)["overall"]["mrr@10"])


class _Mapped:
    """The second encoder with the adapter's map on English queries (as rag/encoders/use.py applies it)."""

    def __init__(self, inner: Encoder, second: np.ndarray):
        self.inner, self.second, self.name, self.dim = inner, second, inner.name, inner.dim

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return adapter.map_english(texts, self.inner.encode_queries(texts), self.second)

    def encode_words(self, texts: list[str]) -> np.ndarray:  # the translation choice's words stay unmapped
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self.inner.encode_passages(texts, progress)


class _PassagesFrom:
    """Queries from one encoder (with or without the adapter), passages from the memo (frozen vectors)."""

    def __init__(self, queries: Encoder, passages: Encoder):
        self.q, self.p, self.name, self.dim = queries, passages, queries.name, queries.dim

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.q.encode_queries(texts)

    def encode_passages(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self.p.encode_passages(texts, progress)


def report(settings: Settings, memo: dict[str, Encoder], args: argparse.Namespace) -> None:
    off = dataclasses.replace(settings, query_adapter="")
    weights = [settings.weights_en] + [w for w in args.weights if w != settings.weights_en]
    plain = encoders_for(off, memo)
    args.folds.mkdir(parents=True, exist_ok=True)
    print("\nheld-out articles (MRR@10; without adapter -> with it):")
    for parity in (0, 1):  # both first: bench/train_confidence.py --adapter-folds reads them
        if not (args.report_only and (args.folds / f"fold{parity}.npz").is_file()):
            train(settings, memo, args, parity, args.folds / f"fold{parity}.npz")
    for parity in (0, 1):
        adapted = encoders_for(dataclasses.replace(settings, query_adapter=str(args.folds / f"fold{parity}.npz")), memo)
        for name in args.sets:
            bench = half(load_benchmark(DATA / name), 1 - parity)
            for w in weights:
                base = searched(dataclasses.replace(off, weights_en=w), plain, bench)
                new = searched(dataclasses.replace(settings, weights_en=w), adapted, bench)
                print(f"  {bench.name:28} weights {w:10} {base:.4f} -> {new:.4f}", flush=True)
    print("\nproject sets, English questions (MRR@10; the adapter just written):")
    shipped = encoders_for(dataclasses.replace(settings, query_adapter=str(args.out)), memo)
    for label, path in (("own", ROOT / "tests/data/questions.jsonl"), ("held-out", ROOT / "bench/holdout/questions.jsonl")):
        for w in weights:
            row = [
                own_set(Retriever(s, e, load_index(s)), path)["en"]
                for s, e in ((off, plain), (settings, shipped))
                for s in [dataclasses.replace(s, weights_en=w)]
            ]
            print(f"  {label:9} weights {w:10} {row[0]:.4f} -> {row[1]:.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="*", default=list(SETS))
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--targets", nargs="*", default=list(TARGETS))
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--tau", type=float, default=0.02, help="softmax temperature over a corpus's passages")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--strength", type=float, default=0.5, help="share of the learnt update applied (the file's scale)")
    ap.add_argument("--second-strength", type=float, default=0.5, help="share of the second encoder's map applied (0: no map)")
    ap.add_argument("--second-epochs", type=int, default=20)
    ap.add_argument("--second-tau", type=float, default=0.05)
    ap.add_argument("--second-l2", type=float, default=0.01)
    ap.add_argument("--second-only", action="store_true", help="keep the e5 part of --out (and of the folds); fit only the map")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=adapter.FILE)
    ap.add_argument("--report", action="store_true", help="held-out articles and the project's sets, with and without")
    ap.add_argument("--report-only", action="store_true", help="measure the adapter in --out (and folds in --folds) without fitting it")
    ap.add_argument("--weights", nargs="*", default=[], help="English fusion weights to compare as well, e.g. 2,1,1")
    ap.add_argument("--folds", type=Path, default=Path("/tmp/rag-adapter-folds"), help="where --report keeps its two fold adapters")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/rag-eng-cache"), help="passage and query vectors, kept between runs")
    args = ap.parse_args()
    args.targets = tuple(args.targets)
    args.cache.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    settings = Settings.from_env()
    memo = {
        role: Memo(enc, role, args.cache)
        for role, enc in load_encoders(dataclasses.replace(settings, query_adapter=""), progress=False).items()
    }
    try:
        if not args.report_only:
            train(settings, memo, args, None, args.out)
        if args.report or args.report_only:
            report(settings, memo, args)
    finally:
        for m in memo.values():
            m.save()
    print(json.dumps({"wrote": str(args.out)}))


if __name__ == "__main__":
    main()
