"""What an incremental build may take from the live version: the document diff and cached vectors.

Documents are compared by the sha256 of their bytes (the manifest keeps one per document id).
Vectors are reused per passage, keyed by sha256(model identity + embedded text): a passage whose
embedded text (section path + text) is unchanged keeps its vector even if its document changed
or was renamed, and a change of model or passage prompt changes every key, so nothing stale is
ever reused. Anything unexpected in the previous version (missing file, checksum mismatch, other
format) means "reuse nothing", never a failed build: the cache is an optimisation, not a source.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import Settings
from rag.encoders import PRIMARY, SECOND
from rag.ingest import Document
from rag.records import DOCUMENTS, parse_documents

KEY_DTYPE = "S64"  # hex sha256; hex never contains NUL, which numpy's bytes dtype would strip


@dataclass
class DocumentChanges:
    """Document ids by what happened to them since the live version (a rename is removed + added)."""

    added: list[str]
    changed: list[str]
    removed: list[str]
    unchanged: list[str]


def diff_documents(before: dict[str, str], after: dict[str, str]) -> DocumentChanges:
    """Compare two {document id: content sha256} maps."""
    return DocumentChanges(
        added=sorted(set(after) - set(before)),
        changed=sorted(d for d in after if d in before and before[d] != after[d]),
        removed=sorted(set(before) - set(after)),
        unchanged=sorted(d for d in after if before.get(d) == after[d]),
    )


def embedding_identities(settings: Settings) -> dict[str, str]:
    """Per encoder role, everything besides the text that decides a passage vector."""
    # The passage engine is part of the key (fp32 and int8 vectors never mix); the fp32 engine keeps
    # the key it had before engines existed, so its cached vectors stay valid.
    engine = "" if settings.passage_engine == "sentence-transformers" else f"\n{settings.passage_engine}"
    out = {PRIMARY: f"{settings.model}\n{settings.passage_prompt}{engine}"}
    if settings.second_model:
        out[SECOND] = f"{settings.second_model}\n"
    return out


def embedding_keys(identity: str, texts: list[str]) -> list[bytes]:
    prefix = identity.encode("utf-8") + b"\0"
    return [hashlib.sha256(prefix + t.encode("utf-8")).hexdigest().encode("ascii") for t in texts]


def save_keys(keys: list[bytes], path: Path) -> None:
    np.save(path, np.array(keys, dtype=KEY_DTYPE), allow_pickle=False)


@dataclass
class Previous:
    """The live version as seen by the next build: its document hashes and reusable vectors."""

    path: Path | None = None
    files: dict[str, str] = field(default_factory=dict)  # document id -> sha256
    vectors: dict[str, tuple[dict[bytes, int], np.ndarray]] = field(default_factory=dict)  # role -> (key -> row, matrix)
    note: str | None = None  # why vectors are not reused, for the user
    documents: dict[str, Document] = field(default_factory=dict)  # parsed documents by sha256 of their bytes
    tokens: dict[bytes, np.ndarray] = field(default_factory=dict)  # primary key -> its token rows (rag/late.py)
    piece_counts: tuple[list[bytes], np.ndarray] | None = None  # its primary keys, sorted, and their piece counts (late.piece_counts)

    def counts_for(self, keys: list[bytes]) -> np.ndarray | None:
        """The live version's piece counts when its passages embed exactly these texts (no model needed), else None."""
        if self.piece_counts is None or self.piece_counts[0] != sorted(keys):
            return None
        return self.piece_counts[1]

    def missing_tokens(self, keys: list[bytes], texts: list[str], todo: dict[bytes, str]) -> dict[bytes, str]:
        """`todo` plus the texts whose token rows are not cached (a passage embedded before late interaction)."""
        out = dict(todo)
        for key, text in zip(keys, texts, strict=True):
            if key not in self.tokens and key not in out:
                out[key] = text
        return out

    def assemble_tokens(self, keys: list[bytes], new_keys: list[bytes], new: list[np.ndarray] | None) -> list[np.ndarray] | None:
        """Each key's token rows, fresh where embedded now, else cached; None when some key has neither."""
        fresh = dict(zip(new_keys, new, strict=True)) if new is not None else {}
        rows = [fresh.get(k, self.tokens.get(k)) for k in keys]
        kept = [r for r in rows if r is not None]
        return kept if len(kept) == len(rows) else None

    def missing(self, role: str, keys: list[bytes], texts: list[str]) -> dict[bytes, str]:
        """The texts to embed for `role`: those whose key has no cached vector, each once, in order."""
        rows = self.vectors.get(role, ({}, None))[0]
        todo: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in rows and key not in todo:
                todo[key] = text
        return todo

    def assemble(self, role: str, keys: list[bytes], new_keys: list[bytes], new: np.ndarray | None) -> np.ndarray:
        """One row per key: the cached vector where there is one, else the freshly embedded one."""
        rows, cached = self.vectors.get(role, ({}, None))
        fresh = {k: i for i, k in enumerate(new_keys)}
        dim = new.shape[1] if new is not None and len(new) else cached.shape[1]  # type: ignore[union-attr]
        out = np.empty((len(keys), dim), dtype=np.float32)
        from_cache = [i for i, k in enumerate(keys) if k in rows]
        from_fresh = [i for i, k in enumerate(keys) if k not in rows]
        if from_cache:
            out[from_cache] = cached[[rows[keys[i]] for i in from_cache]]  # type: ignore[index]
        if from_fresh:
            out[from_fresh] = new[[fresh[keys[i]] for i in from_fresh]]  # type: ignore[index]
        return out


def read_previous(version: Path | None, roles: dict[str, str], format_version: int, reuse: bool, late: str = "") -> Previous:
    """Read what the next build can use from `version`; problems become a note, never an error.

    `late`: the token projection the build uses; token rows made with another one are not reused."""
    if version is None:
        return Previous()
    try:
        manifest: dict[str, Any] = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
        files = dict(manifest["corpus"]["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Previous(version, note=f"the live index at {version} is unreadable ({exc}); embedding every passage")
    previous = Previous(version, files)
    if not reuse:
        return previous
    if manifest.get("format_version") != format_version:
        previous.note = f"the live index has format {manifest.get('format_version')!r}, not {format_version}; embedding every passage"
        return previous
    checksums = manifest.get("files", {})
    try:
        stored = read_documents_verified(version, checksums)
        previous.documents = {d.sha256: d for d in stored}
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        pass  # documents are parsed again: slower, never wrong
    for role in roles:
        try:
            keys = _verified_load(version, f"keys-{role}.npy", checksums)
            matrix = _verified_load(version, f"embeddings-{role}.npy", checksums)
            if keys.ndim != 1 or matrix.ndim != 2 or len(keys) != len(matrix):
                raise ValueError(f"shapes {keys.shape} and {matrix.shape} do not match")
        except (OSError, ValueError) as exc:
            previous.note = f"cached {role} vectors in {version} not reused ({exc}); embedding those passages again"
            continue
        previous.vectors[role] = ({k: i for i, k in enumerate(keys.tolist())}, matrix)
        if role == PRIMARY and late and (manifest.get("late") or {}).get("projection") == late:
            try:
                from rag.late import TOKEN_OFFSETS, TOKENS, unpack

                rows = unpack(_verified_load(version, TOKENS, checksums), _verified_load(version, TOKEN_OFFSETS, checksums))
                previous.tokens = dict(zip(keys.tolist(), rows, strict=True))
                if (manifest.get("late") or {}).get("idf"):
                    from rag.late import PIECE_COUNTS

                    previous.piece_counts = (sorted(keys.tolist()), _verified_load(version, PIECE_COUNTS, checksums))
            except (OSError, ValueError) as exc:
                previous.note = f"cached token rows in {version} not reused ({exc}); computing them again"
    return previous


def read_documents_verified(version: Path, checksums: dict[str, str]) -> list[Document]:
    """The live version's parsed documents, only if documents.jsonl matches its checksum."""
    return parse_documents(_verified_bytes(version, DOCUMENTS, checksums).decode("utf-8"))


def _verified_load(version: Path, name: str, checksums: dict[str, str]) -> np.ndarray:
    """np.load, but only of a file whose bytes match the manifest's checksum."""
    return np.load(io.BytesIO(_verified_bytes(version, name, checksums)), allow_pickle=False)


def _verified_bytes(version: Path, name: str, checksums: dict[str, str]) -> bytes:
    """A file's bytes, only if they match the manifest's checksum (ValueError otherwise)."""
    data = (version / name).read_bytes()
    if checksums.get(name) != hashlib.sha256(data).hexdigest():
        raise ValueError(f"{name} does not match its checksum")
    return data
