"""The rows of an index version's passages.jsonl and documents.jsonl.

documents.jsonl keeps every document's canonical text (the text all offsets index) with its
structure, so a citation can be checked through GET /documents/{id} and an incremental build
reuses a parsed document whose bytes did not change instead of parsing it again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rag.chunk import Passage
from rag.ingest import Document, document_from_json, document_to_json

PASSAGES = "passages.jsonl"
DOCUMENTS = "documents.jsonl"


def passage_from_json(row: dict[str, Any]) -> Passage:
    return Passage(
        doc_id=row["document"],
        title=row["title"],
        section=tuple(row["section"]),
        start=row["start"],
        end=row["end"],
        line_start=row["line_start"],
        line_end=row["line_end"],
        text=row["text"],
        format=row.get("format", "txt"),
        page_start=row.get("page_start"),
        page_end=row.get("page_end"),
    )


def passage_to_json(p: Passage) -> dict[str, Any]:
    return {
        "document": p.doc_id,
        "title": p.title,
        "section": list(p.section),
        "start": p.start,
        "end": p.end,
        "line_start": p.line_start,
        "line_end": p.line_end,
        "text": p.text,
        "format": p.format,
        "page_start": p.page_start,
        "page_end": p.page_end,
    }


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_passages(path: Path) -> list[Passage]:
    return [passage_from_json(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]


def write_documents(path: Path, docs: Iterable[Document]) -> None:
    write_jsonl(path, (document_to_json(d) for d in docs))


def parse_documents(text: str) -> list[Document]:
    """The documents of a documents.jsonl's text, in file order."""
    return [document_from_json(json.loads(line)) for line in text.splitlines() if line.strip()]


def read_documents(path: Path) -> dict[str, Document]:
    """Documents by id."""
    return {d.id: d for d in parse_documents(path.read_text(encoding="utf-8"))}
