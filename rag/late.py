"""Late interaction: the question's e5 token vectors against each candidate passage's (ColBERT's MaxSim).

Why: a passage's one vector averages its tokens away. Matching each question token with its best
passage token keeps which words, in context, the passage holds. Untrained (e5's own last hidden
states, centred and cut to 128 dimensions by a fixed PCA fitted on public Chinese passages by
bench/fit_token_projection.py), it is the strongest single signal for Chinese questions: own-set
MRR@10 0.92 alone against 0.82 for the fused three (docs/quality.md, "Late interaction"). Each
question token's best match weighs by its piece's BM25 idf over the passages (PieceIdf), so 的 and
"？" count less than 报销: fused, own-set Chinese MRR@10 0.897 -> 0.920.

Cost: a passage's token rows come from the forward pass that embeds it (the int8 engine's second
output) and are stored as float16, 256 bytes a token (~25 KB a 300-character passage; float32 in
memory); a question's come from the pass that embeds it. A search scores only the fused top
candidates (RAG_LATE_DEPTH).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rag.errors import RagError
from rag.fusion import Ranking, empty

PROJECTION_FILE = Path(__file__).parent / "models" / "token_projection.npz"
DTYPE = np.float16
TOKENS, TOKEN_OFFSETS = "tokens-primary.npy", "token-offsets-primary.npy"  # an index version's files
PIECE_COUNTS = "token-pieces-primary.npy"  # (2, pieces): each piece id the passages hold, and in how many


class PieceIdf(NamedTuple):
    """BM25's idf of each tokenizer piece over the index's passages: how much a question token's
    match weighs in MaxSim. Why: a plain mean lets the question's 的, 吗 and "？", which every passage
    matches, count as much as its 报销 or 澳门 (docs/quality.md, "Late interaction")."""

    ids: np.ndarray  # sorted piece ids that some passage holds
    idf: np.ndarray  # float32, their idf
    unseen: float  # the idf of a piece no passage holds

    def weights(self, pieces: Sequence[int]) -> np.ndarray:
        """Each question token's share of its MaxSim score (summing to 1), in the order of its rows."""
        ids = np.asarray(pieces, dtype=np.int64)
        idf = np.full(len(ids), self.unseen, dtype=np.float32)
        if len(self.ids):
            at = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
            found = self.ids[at] == ids
            idf[found] = self.idf[at[found]]
        return idf / max(float(idf.sum()), 1e-12)


def piece_counts(encoder: Any, texts: Sequence[str], batch: int = 1024) -> np.ndarray | None:
    """(2, n): the distinct piece ids of the passages' `texts` (as `encoder` embeds them), sorted, over how many
    passages hold each; None when the encoder cannot say its pieces. Tokenizing only, a batch at a time."""
    pieces_of = getattr(encoder, "token_pieces", None)
    if pieces_of is None:
        return None
    ids, counts = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    for start in range(0, len(texts), batch):
        held = [np.unique(np.asarray(p, dtype=np.int64)) for p in pieces_of(list(texts[start : start + batch]), query=False)]
        merged = np.concatenate([ids, *held])
        ids, where = np.unique(merged, return_inverse=True)
        counts = np.bincount(where, weights=np.concatenate([counts, np.ones(len(merged) - len(counts))])).astype(np.int64)
    return np.stack([ids, counts])


def piece_idf(counts: np.ndarray, passages: int) -> PieceIdf:
    """The idf BM25 (bm25s, Lucene's) gives a term in `df` of `passages` documents: ln(1 + (N - df + 0.5) / (df + 0.5))."""
    df = counts[1].astype(np.float64)
    idf = np.log1p((passages - df + 0.5) / (df + 0.5)).astype(np.float32)
    return PieceIdf(counts[0].astype(np.int64), idf, float(np.log1p((passages + 0.5) / 0.5)))


def save_piece_counts(folder: Path, counts: np.ndarray, passages: int) -> dict[str, Any]:
    """Write the passages' piece counts into an index version being built; returns its manifest entry."""
    np.save(folder / PIECE_COUNTS, counts.astype(np.int64), allow_pickle=False)
    return {"weights": "idf", "passages": passages, "pieces": int(counts.shape[1])}


def load_piece_idf(folder: Path, manifest: dict[str, Any]) -> PieceIdf | None:
    """The idf MaxSim weighs question tokens by; None for an index built before it (tokens weigh the same)."""
    entry = (manifest.get("late") or {}).get("idf")
    if not entry:
        return None
    counts = np.load(folder / PIECE_COUNTS, allow_pickle=False)
    if counts.ndim != 2 or counts.shape != (2, int(entry["pieces"])):
        raise ValueError(f"piece counts of shape {counts.shape} do not match the manifest's {entry['pieces']} pieces")
    return piece_idf(counts, int(entry["passages"]))


def save_rows(folder: Path, rows: Sequence[np.ndarray], projection: Projection) -> dict[str, Any]:
    """Write per-passage token rows into an index version being built; returns its manifest entry."""
    matrix, offsets = pack(rows, projection.dim)
    np.save(folder / TOKENS, matrix, allow_pickle=False)
    np.save(folder / TOKEN_OFFSETS, offsets, allow_pickle=False)
    return {"projection": projection.version, "dim": projection.dim, "tokens": len(matrix)}


def load_rows(folder: Path, manifest: dict[str, Any], passages: int) -> tuple[np.ndarray, np.ndarray] | None:
    """An index version's token rows and offsets (None when it was built without); ValueError when they do not fit."""
    if not manifest.get("late"):
        return None
    matrix, offsets = np.load(folder / TOKENS, allow_pickle=False), np.load(folder / TOKEN_OFFSETS, allow_pickle=False)
    if len(offsets) != passages + 1 or int(offsets[-1]) != len(matrix) or matrix.ndim != 2:
        raise ValueError(f"token rows do not match its {passages} passages")
    return searchable(matrix), offsets


def searchable(matrix: np.ndarray) -> np.ndarray:
    """The rows as a search reads them: float32 in memory (512 bytes a token), which halves MaxSim's time."""
    return np.asarray(matrix, dtype=np.float32)


class Projection(NamedTuple):
    """x -> unit((unit(x) - mean) @ components): what a token's hidden state becomes before MaxSim.

    English questions are centred on `english_mean` instead (the mean of public English questions'
    token vectors), when the file has one: English and Chinese tokens sit around different centres,
    and an English token centred on the Chinese mean keeps its language's offset, which then
    outweighs what it means."""

    version: str
    mean: np.ndarray  # (hidden,)
    components: np.ndarray  # (hidden, dim)
    english_mean: np.ndarray | None = None  # (hidden,)

    @property
    def dim(self) -> int:
        return int(self.components.shape[1])


def load_projection(path: Path = PROJECTION_FILE) -> Projection:
    """The shipped projection (or another file of the same layout); a bad file is one error line."""
    try:
        with np.load(path, allow_pickle=False) as data:
            english = data["english_mean"].astype(np.float32) if "english_mean" in data.files else None
            projection = Projection(str(data["version"]), data["mean"].astype(np.float32), data["components"].astype(np.float32), english)
    except (OSError, ValueError, KeyError) as exc:
        raise RagError(f"cannot read the token projection {path}: {exc}; reinstall the package") from exc
    if projection.mean.shape != projection.components.shape[:1] or (english is not None and english.shape != projection.mean.shape):
        raise RagError(f"the token projection {path} is damaged (mean {projection.mean.shape}, components {projection.components.shape})")
    return projection


def save_projection(path: Path, projection: Projection) -> None:
    arrays = {"version": np.array(projection.version), "mean": projection.mean, "components": projection.components.astype(np.float32)}
    if projection.english_mean is not None:
        arrays["english_mean"] = projection.english_mean
    np.savez(path, **arrays)  # type: ignore[arg-type]


def token_rows(
    projection: Projection, skip: frozenset[int], prompt_pieces: int, english: bool = False
) -> Callable[[np.ndarray, Sequence[int]], np.ndarray]:
    """What an encoder keeps of one text's (tokens, hidden) states: projected unit rows of its own words.

    Dropped: position 0 (<s>), the prompt's `prompt_pieces` after it ("query:", "passage:"), and the
    `skip` ids (</s>, padding, the bare word-start piece "▁" that carries no word). `english`: an
    English question's rows, centred on the projection's English mean when it has one.
    """
    mean = projection.english_mean if english and projection.english_mean is not None else projection.mean

    def rows(hidden: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        keep = kept_positions(ids, skip, prompt_pieces)
        return _unit((_unit(np.asarray(hidden[keep], dtype=np.float32)) - mean) @ projection.components).astype(DTYPE)

    return rows


def kept_positions(ids: Sequence[int], skip: frozenset[int], prompt_pieces: int) -> list[int]:
    """Which of a text's tokens get a row: not <s> (position 0), not the prompt's pieces, not a `skip` id."""
    return [i for i, t in enumerate(ids) if i > prompt_pieces and t not in skip]


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))


def skipped_ids(tokenizer: Any) -> frozenset[int]:
    """The ids `token_rows` drops wherever they occur: special tokens and the bare "▁"."""
    names = ("<s>", "</s>", "<pad>", "[CLS]", "[SEP]", "[PAD]", "▁")
    return frozenset(i for i in (tokenizer.token_to_id(n) for n in names) if i is not None)


def prompt_pieces(tokenizer: Any, prompt: str) -> int:
    """How many pieces the prompt ("query: ") takes after <s>, so its tokens are not matched."""
    return len(tokenizer.encode(prompt.strip(), add_special_tokens=False).ids) if prompt.strip() else 0


def pack(rows: Sequence[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-passage rows as one matrix and offsets: passage i owns matrix[offsets[i]:offsets[i + 1]]."""
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    matrix = np.concatenate(rows).astype(DTYPE) if rows and offsets[-1] else np.zeros((0, dim), dtype=DTYPE)
    return matrix, offsets


def unpack(matrix: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [matrix[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def maxsim(
    query: np.ndarray, matrix: np.ndarray, offsets: np.ndarray, candidates: np.ndarray, weights: np.ndarray | None = None
) -> Ranking:
    """Candidates by the mean over question tokens of each one's best cosine with a passage token, best first;
    with `weights` (one per question row, summing to 1: PieceIdf.weights) the weighted mean."""
    if not len(query) or not candidates.size:
        return empty()
    starts, ends = offsets[candidates], offsets[candidates + 1]
    has = ends > starts
    candidates, starts, ends = candidates[has], starts[has], ends[has]
    if not candidates.size:
        return empty()
    lengths = ends - starts
    firsts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rows = np.repeat(starts - firsts, lengths) + np.arange(int(lengths.sum()))
    similarity = np.asarray(matrix[rows], dtype=np.float32) @ np.asarray(query, dtype=np.float32).T  # (tokens, question tokens)
    best = np.maximum.reduceat(similarity, firsts, axis=0)
    scores = best @ weights.astype(np.float32) if weights is not None and len(weights) == best.shape[1] else best.mean(1)
    order = np.lexsort((candidates, -scores))
    return Ranking(candidates[order].astype(np.int64), scores[order].astype(np.float32))
