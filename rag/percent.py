"""Is a URL part UTF-8 once percent-decoded? Starlette reads bytes that are not as U+FFFD and goes on.

A question searched for U+FFFD, or a document written under a name with U+FFFD in it, is not what the
client sent: both are refused with a 422 naming the part instead (rag/api.py, rag/admin.py).
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes


def _why(raw: bytes, what: str) -> str | None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"is not UTF-8 text (byte 0x{raw[exc.start]:02X} at byte {exc.start}); percent-encode the {what}'s UTF-8 bytes"
    return None


def undecodable_param(query_string: bytes, name: bytes) -> str | None:
    """Why the query string's `name` parameter is not UTF-8 once percent-decoded; None when it is (or is absent)."""
    for pair in query_string.split(b"&"):
        key, _, value = pair.partition(b"=")
        if unquote_to_bytes(key.replace(b"+", b" ")) != name:
            continue
        why = _why(unquote_to_bytes(value.replace(b"+", b" ")), "question")
        if why:
            return why
    return None


def undecodable_path(raw_path: bytes) -> str | None:
    """Why the request's path is not UTF-8 once percent-decoded; None when it is."""
    return _why(unquote_to_bytes(raw_path), "path")
