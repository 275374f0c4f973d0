"""Shared by the passage engines: thread counts, length-sorted batches and the progress bar.

Why: padding a batch to its longest text wastes most of the work when passage lengths vary
(bench/perf_embed.py); sorting by length first and cutting batches by a padded-token budget keeps
padding small. Threads are set to the cores this process may use, so a build on a busy machine
runs one compute thread per core instead of the libraries' own guesses.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

#: Padded tokens per batch (rows x longest row). ~2-4k was fastest for e5-small on 2 cores; the
#: rows cap keeps a batch of very short sentences from growing unboundedly.
TOKEN_BUDGET = 2048
MAX_ROWS = 64


def cores() -> int:
    """The CPUs this process may run on (affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def threads_for(setting: int) -> int:
    """RAG_EMBED_THREADS, where 0 (the default) means one thread per usable core."""
    return setting if setting > 0 else cores()


def length_batches(lengths: Sequence[int], token_budget: int = TOKEN_BUDGET, max_rows: int = MAX_ROWS) -> list[np.ndarray]:
    """Row indices grouped longest first, each group's rows x longest length within the budget."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = max(1, int(lengths[order[start]]))
        rows = max(1, min(max_rows, token_budget // longest))
        batches.append(order[start : start + rows])
        start += rows
    return batches


def progress_bar(total: int, enabled: bool, desc: str) -> Any:
    """A tqdm bar counting passages (so its rate is passages/s and its ETA is real), or a no-op."""
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled or total == 0, desc=desc, unit="passage", unit_scale=False, smoothing=0.1)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to `n` for the block, then restored (a server keeps its 1)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
