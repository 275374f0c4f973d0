"""Who runs next when searches pile up: a heavy client must not starve the others.

A search's cost is about its length in model tokens (the dense encoders dominate: a 512-token
question took 580 ms, a 12-character one 16 ms). So there are two queues: every search needs one
of `slots` slots (one per core: more only makes the encoders' threads fight), and a long question
also needs one of `slots - 1` long slots. However many long questions arrive, a core stays free for
short ones. Each client (address) has at most `per_client` searches in flight; the rest wait their
turn, so one client opening many connections only queues behind itself.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

LONG_QUESTION_TOKENS = 48  # above this a question takes a long slot (own-set questions: 8-40 tokens)


class Admission:
    """Slots for searches: `with admission.slot(client, tokens): search()`."""

    def __init__(self, slots: int, per_client: int | None = None, fair: bool = True):
        self.fair = fair  # False: one queue for all, first come first served (measured against in bench/fairness.py)
        self.slots = max(1, slots)
        self._any = threading.BoundedSemaphore(self.slots)
        self._long = threading.BoundedSemaphore(max(1, self.slots - 1))
        self.per_client = per_client or self.slots
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[threading.BoundedSemaphore, int]] = {}  # address -> (its slots, searches in flight or waiting)

    @contextlib.contextmanager
    def slot(self, client: str, tokens: int) -> Iterator[None]:
        """Wait for a long slot if the question is long, then this client's turn, then any slot."""
        if not self.fair:
            with self._any:
                yield
            return
        # A long question waits for a long slot before it counts against its client, so a client's
        # queued long questions never hold back its (or another local client's) short ones.
        with self._long if tokens > LONG_QUESTION_TOKENS else contextlib.nullcontext():
            own = self._enter(client)
            try:
                with own, self._any:
                    yield
            finally:
                self._leave(client)

    def _enter(self, client: str) -> threading.BoundedSemaphore:
        with self._lock:
            own, users = self._clients.get(client) or (threading.BoundedSemaphore(self.per_client), 0)
            self._clients[client] = (own, users + 1)
            return own

    def _leave(self, client: str) -> None:
        """Forget a client with nothing in flight or waiting, so the table never grows without bound."""
        with self._lock:
            own, users = self._clients[client]
            if users == 1:
                del self._clients[client]
            else:
                self._clients[client] = (own, users - 1)
