"""Labelled rows of the training scripts, cached as JSON lines: collecting them means thousands of
searches, training on them seconds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def load_or_collect(path: Path, make: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows cached at `path`, or collected by `make` and cached there."""
    if path.exists():
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return rows
