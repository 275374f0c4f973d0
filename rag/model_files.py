"""Reading the small JSON model files under rag/models/ (the confidence and the ranker).

Each file names its `kind`; a file that is missing, is not JSON, is of another kind or holds a
malformed array is one clear error naming the setting that chose it, raised when the retriever
starts rather than in the middle of a search.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from rag.errors import RagError

T = TypeVar("T")


def read_model(where: Path, setting: str, what: str, kinds: Collection[str], parse: Callable[[dict[str, Any]], T]) -> T:
    """`parse` of the JSON object at `where`, whose kind must be one of `kinds`; any failure is a RagError."""
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("kind") not in kinds:
            kind = data.get("kind") if isinstance(data, dict) else None
            raise ValueError(f"kind {kind!r} is not {' or '.join(repr(k) for k in kinds)}")
        return parse(data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise RagError(f"{setting}: {where} is not a {what} model ({exc})") from exc


def vectors(data: Mapping[str, Any], keys: tuple[str, ...], length: int, where: str = "") -> list[np.ndarray]:
    """The finite float lists `data[key]`, each as long as the feature list."""
    arrays = [np.asarray(data[key], dtype=np.float64) for key in keys]
    if any(a.shape != (length,) for a in arrays) or not all(np.isfinite(a).all() for a in arrays):
        raise ValueError(f"{where}{', '.join(keys)} must be finite lists as long as features")
    return arrays


def features(data: Mapping[str, Any], known: Collection[str]) -> tuple[str, ...]:
    """The file's feature names, each one the code computes."""
    names = tuple(str(f) for f in data["features"])
    unknown = set(names) - set(known)
    if unknown:
        raise ValueError(f"unknown features {sorted(unknown)}")
    return names


def meta(data: Mapping[str, Any], read: Collection[str]) -> dict[str, Any]:
    """What the file says besides the fields the reader used (what it was trained on, and so on)."""
    return {k: v for k, v in data.items() if k not in read}
