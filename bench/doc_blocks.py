"""Each benchmark owns one marked block of a doc (`<!-- KEY:start -->` ... `<!-- KEY:end -->`) and
rewrites only that, so benchmarks and hand-written text share a file without clobbering each other."""

from __future__ import annotations

from pathlib import Path


def markers(key: str) -> tuple[str, str]:
    return f"<!-- {key}:start -->", f"<!-- {key}:end -->"


def get_block(text: str, key: str) -> str | None:
    """The body of block `key` in `text`, or None when there is none."""
    start, end = markers(key)
    if start not in text or end not in text:
        return None
    return text[text.index(start) + len(start) : text.index(end)].strip("\n")


def put_block(text: str, key: str, body: str) -> str:
    """`text` with block `key` holding `body`: replaced in place, or appended at the end."""
    start, end = markers(key)
    block = f"{start}\n{body.strip()}\n{end}"
    if get_block(text, key) is None:
        return text.rstrip("\n") + "\n\n" + block + "\n"
    return text[: text.index(start)] + block + text[text.index(end) + len(end) :]


def update_doc(path: Path, key: str, body: str, title: str) -> None:
    """Write `body` into block `key` of the doc at `path` (created with `# title` when missing)."""
    text = path.read_text(encoding="utf-8") if path.exists() else f"# {title}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(put_block(text, key, body), encoding="utf-8")
