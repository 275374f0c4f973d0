"""A BERT encoder forward pass in numpy, for the query path of a sentence-transformers folder.

Why: importing torch, transformers and sentence-transformers costs ~6 s of a server's cold start,
and a query is one short sequence, where numpy is as fast as torch (bench/perf_query.py). The
weights are memory-mapped from the folder's `model.safetensors`, so loading is ~0.6 s and the
250k-row embedding table is read only where queries touch it. Vectors equal sentence-transformers'
to ~1e-7 (tests/test_encoders.py). Only plain BERT + mean pooling + normalisation folders qualify
(`supports`); anything else goes through sentence-transformers.
"""

from __future__ import annotations

import copy
import json
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rag.encoders.adapter import SETTING, Adapter, apply
from rag.errors import RagError

_POOLING = "sentence_transformers.models.Pooling"
_PLAIN_MODULES = ["sentence_transformers.models.Transformer", _POOLING, "sentence_transformers.models.Normalize"]


def supports(folder: Path) -> bool:
    """True for a folder this module reproduces exactly: BERT, mean pooling, L2 normalisation."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        pooling_dir = next(m["path"] for m in modules if m["type"] == _POOLING)
        pooling = json.loads((folder / pooling_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, StopIteration):
        return False
    return (
        [m["type"] for m in modules] == _PLAIN_MODULES
        and config.get("model_type") == "bert"
        and config.get("hidden_act") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and (folder / "model.safetensors").is_file()
        and (folder / "tokenizer.json").is_file()
        and pooling.get("pooling_mode_mean_tokens") is True
        and not any(v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens")
    )


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    """float32 tensors of a safetensors file as read-only memory maps (format: u64 header size, JSON header, data)."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} is {meta['dtype']}; only F32 is supported")
        start, end = meta["data_offsets"]
        tensors[name.removeprefix("bert.")] = data[start:end].view(np.float32).reshape(meta["shape"])
    return tensors


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = np.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact (erf) GELU; erf by Abramowitz & Stegun 7.1.26 (error 1.5e-7, below float32 noise here)."""
    z = np.abs(x) * np.float32(1 / math.sqrt(2))
    t = 1 / (1 + np.float32(0.3275911) * z)
    poly = ((((np.float32(1.061405429) * t - np.float32(1.453152027)) * t + np.float32(1.421413741)) * t
             - np.float32(0.284496736)) * t + np.float32(0.254829592)) * t  # fmt: skip
    erf = np.sign(x) * (1 - poly * np.exp(-z * z))
    return 0.5 * x * (1 + erf)


class Layer(NamedTuple):
    """One layer's weights, transposed once for `x @ W`; query/key/value fused into one matrix."""

    qkv: np.ndarray
    qkv_b: np.ndarray
    out: np.ndarray
    out_b: np.ndarray
    norm1_w: np.ndarray
    norm1_b: np.ndarray
    up: np.ndarray
    up_b: np.ndarray
    down: np.ndarray
    down_b: np.ndarray
    norm2_w: np.ndarray
    norm2_b: np.ndarray


# A layer's weight name (model.safetensors, without "encoder.layer.N.") -> the Layer field it feeds.
_FIELD_OF = {f"attention.self.{n}.weight": "qkv" for n in ("query", "key", "value")}
_FIELD_OF |= {"attention.output.dense.weight": "out", "intermediate.dense.weight": "up", "output.dense.weight": "down"}


class NumpyBert:
    """Mean-pooled, L2-normalised BERT sentence vectors, computed in numpy."""

    def __init__(self, folder: Path, max_length: int = 512):
        from tokenizers import Tokenizer

        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.dim = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.pad_id = int(config.get("pad_token_id", 0))
        w = load_safetensors(folder / "model.safetensors")
        self.embeddings = (w["embeddings.word_embeddings.weight"], w["embeddings.position_embeddings.weight"])
        self.token_type = np.array(w["embeddings.token_type_embeddings.weight"][0])
        self.embedding_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self._weights = w
        self.layers = [self._layer(w, f"encoder.layer.{i}.") for i in range(int(config["num_hidden_layers"]))]
        self.tokenizer: Any = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(min(max_length, int(config["max_position_embeddings"])))

    def adapted(self, adapter: Adapter) -> NumpyBert:
        """The same model with `adapter`'s updates merged into its layers (rag/encoders/adapter.py).

        Embeddings, tokenizer and every matrix the adapter leaves alone are shared with this model."""
        layer_names = {f"encoder.layer.{i}.{name}" for i in range(len(self.layers)) for name in _FIELD_OF}
        if unknown := sorted(set(adapter.deltas) - layer_names):
            raise RagError(f"{SETTING}: adapter {adapter.version} updates {unknown[0]}, which only linear layer weights may be")
        w = apply(self._weights, adapter)
        other = copy.copy(self)
        other.layers = []
        for i, layer in enumerate(self.layers):
            pre = f"encoder.layer.{i}."
            fields = {_FIELD_OF[name.removeprefix(pre)] for name in adapter.deltas if name.startswith(pre)}
            fresh = self._layer(w, pre) if fields else layer
            other.layers.append(layer._replace(**{f: getattr(fresh, f) for f in fields}))
        return other

    @staticmethod
    def _layer(w: dict[str, np.ndarray], pre: str) -> Layer:
        qkv = [pre + f"attention.self.{n}" for n in ("query", "key", "value")]
        attn, ffn = pre + "attention.output.", pre + "output."
        return Layer(
            qkv=np.ascontiguousarray(np.concatenate([w[p + ".weight"] for p in qkv]).T),
            qkv_b=np.concatenate([w[p + ".bias"] for p in qkv]),
            out=np.ascontiguousarray(w[attn + "dense.weight"].T),
            out_b=np.array(w[attn + "dense.bias"]),
            norm1_w=np.array(w[attn + "LayerNorm.weight"]),
            norm1_b=np.array(w[attn + "LayerNorm.bias"]),
            up=np.ascontiguousarray(w[pre + "intermediate.dense.weight"].T),
            up_b=np.array(w[pre + "intermediate.dense.bias"]),
            down=np.ascontiguousarray(w[ffn + "dense.weight"].T),
            down_b=np.array(w[ffn + "dense.bias"]),
            norm2_w=np.array(w[ffn + "LayerNorm.weight"]),
            norm2_b=np.array(w[ffn + "LayerNorm.bias"]),
        )

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors; a batch is padded to its longest text and masked."""
        return self.encode_with_states(texts)[0]

    def encode_with_states(
        self, texts: list[str], states: Callable[[np.ndarray, list[int]], np.ndarray] | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """`encode`, and per text `states(its last hidden states, its token ids)` from the same pass (rag/late.py)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32), []
        encodings = self.tokenizer.encode_batch(texts)
        batch, length = len(texts), max(len(e.ids) for e in encodings)
        ids = np.full((batch, length), self.pad_id, dtype=np.int64)
        mask = np.zeros((batch, length), dtype=np.float32)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1.0
        words, positions = self.embeddings
        x = layer_norm(words[ids] + positions[:length] + self.token_type, *self.embedding_norm, self.eps)
        attend = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # padding gets no attention
        for layer in self.layers:
            x = self._block(x, layer, attend)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        rows = [states(x[i, : len(e.ids)], e.ids) for i, e in enumerate(encodings)] if states is not None else []
        return (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float32), rows

    def _block(self, x: np.ndarray, layer: Layer, attend: np.ndarray) -> np.ndarray:
        """Post-norm transformer block: self-attention, then the feed-forward, each with a residual."""
        batch, length, dim = x.shape
        heads, head_dim = self.heads, dim // self.heads
        qkv = (x @ layer.qkv + layer.qkv_b).reshape(batch, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
        scores = qkv[0] @ qkv[1].transpose(0, 1, 3, 2) * np.float32(1 / math.sqrt(head_dim)) + attend
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ qkv[2]).transpose(0, 2, 1, 3).reshape(batch, length, dim)
        x = layer_norm(context @ layer.out + layer.out_b + x, layer.norm1_w, layer.norm1_b, self.eps)
        hidden = gelu(x @ layer.up + layer.up_b)
        return layer_norm(hidden @ layer.down + layer.down_b + x, layer.norm2_w, layer.norm2_b, self.eps)
