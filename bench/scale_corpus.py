"""100,000 passages of real, varied Chinese text and ~1,000 real questions, embedded once and cached.

Why: the store scale figures (bench/perf_store_scale.py) need real e5 vectors; synthetic clusters
(bench/perf_scale.py) flatter or punish an ANN index in ways no corpus does. Nothing here is copied
into the repository: the text is assembled from public data already on disk (`--data`, fetched by the
lead from GitHub mirrors; `../shared/data`, the BEIR sets) into `--cache` (default
~/.cache/rag-bench/), with the vectors beside it as .npy, so reruns skip the ~15-30 min of embedding.

Sources and licences (commits in <data>/SOURCES.md):
- prose, all of it, packed from whole sentences into passages of 150-300 characters:
  ymcui/cmrc2018 trial+dev paragraphs (Chinese Wikipedia, CC BY-SA 4.0);
  DRCKnowledgeTeam/DRCD dev+test paragraphs (Traditional-Chinese Wikipedia, CC BY-SA 3.0);
  Toyhom/Chinese-medical-dialogue-data 内科.txt and 样例_内科5000-6000.csv, question + doctor's answer
  (GB18030, MIT); XQuAD's Chinese paragraphs from ../shared/data (google-deepmind/xquad, CC BY-SA 4.0);
  the Four Books of chinese-poetry/chinese-poetry (大学, 中庸, 孟子; MIT);
- the rest, one poem a passage (title, author, text), a seeded sample of chinese-poetry (MIT):
  全唐诗 (Tang and Song shi), 元曲 (Yuan qu), 五代诗词 (花间集, 南唐), mostly traditional characters.
Exact duplicates are dropped. Questions: a seeded sample of ~250 each of cmrc2018 dev, DRCD dev,
XQuAD zh and Toyhom titles (real questions, embedded with the query path: `query: ` + NumpyBert).

    .venv/bin/python bench/scale_corpus.py [--n 100000] [--embed]   # prints the mix; --embed caches vectors
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import io
import json
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# The fetched public sources (SOURCES.md there lists repositories, commits and licences) and the BEIR sets.
DATA = Path(os.environ.get("RAG_SCALE_DATA", ROOT.parent / "scale_data"))
SHARED = Path(os.environ.get("RAG_SHARED_DATA", ROOT.parent / "shared" / "data"))
CACHE = Path.home() / ".cache" / "rag-bench"
SEED = 20261201
TOYHOM = "Toyhom+Chinese-medical-dialogue-data"
MIN_CHARS, MAX_CHARS = 150, 300
#: Sentence ends, Chinese and Western; a passage is cut only after one of these.
_SENTENCE = re.compile(r"[^。！？；!?;\n]*[。！？；!?;\n」』”]*")


#: For the docs: how the passages were made.
HOW = (
    "assembled by `bench/scale_corpus.py` from public data (no text is in the repository): all the prose there is, "
    "packed from whole sentences into passages of 150-300 characters, namely Chinese Wikipedia paragraphs of "
    "ymcui/cmrc2018 trial+dev (CC BY-SA 4.0), Traditional-Chinese Wikipedia paragraphs of DRCD dev+test (CC BY-SA 3.0), "
    "XQuAD's Chinese paragraphs (CC BY-SA 4.0), Toyhom medical dialogues (question + doctor's answer, MIT) and three of "
    "the Four Books; the rest is a seeded sample of classical poems, one per passage (title, author, text), from "
    "chinese-poetry/chinese-poetry (MIT: Tang and Song shi, Yuan qu, Five Dynasties ci; mostly traditional characters); "
    "exact duplicates dropped"
)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def pack(text: str, lo: int = MIN_CHARS, hi: int = MAX_CHARS) -> list[str]:
    """Whole sentences packed into passages of lo..hi characters (a longer sentence is cut at hi);
    a short tail joins the previous passage when that stays under hi, else stands alone."""
    out: list[str] = []
    cur = ""
    for s in sentences(text):
        while len(s) > hi:
            if cur:
                out.append(cur)
                cur = ""
            out.append(s[:hi])
            s = s[hi:]
        if cur and len(cur) + len(s) > hi:
            out.append(cur)
            cur = ""
        cur += s
        if len(cur) >= lo:
            out.append(cur)
            cur = ""
    if cur:
        if out and len(out[-1]) + len(cur) <= hi:
            out[-1] += cur
        else:
            out.append(cur)
    return out


def _squad_contexts(path: Path) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return [p["context"] for doc in data for p in doc["paragraphs"]]


def _squad_questions(path: Path) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return [q["question"] for doc in data for p in doc["paragraphs"] for q in p["qas"]]


def _toyhom_txt(path: Path) -> list[tuple[str, str]]:
    """(question title + body, answer) pairs of 内科.txt: "title,ask\\nanswer\\n\\n\\n" records."""
    text = path.read_bytes().decode("gb18030", errors="replace")
    pairs = []
    for record in text.split("\n\n\n"):
        lines = [x for x in record.strip().split("\n") if x.strip()]
        if len(lines) >= 2:
            pairs.append((lines[0], " ".join(lines[1:])))
    return pairs


def _toyhom_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode("gb18030", errors="replace"))))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def prose_units(data: Path, shared: Path) -> list[tuple[str, str]]:
    """(source, text) of every prose document, before packing."""
    units: list[tuple[str, str]] = []
    cmrc = data / "ymcui+cmrc2018" / "squad-style-data"
    for name in ("cmrc2018_trial.json", "cmrc2018_dev.json"):
        units += [("cmrc2018", c) for c in _squad_contexts(cmrc / name)]
    drcd = data / "DRCKnowledgeTeam+DRCD"
    for name in ("DRCD_dev.json", "DRCD_test.json"):
        units += [("drcd", c) for c in _squad_contexts(drcd / name)]
    toy = data / TOYHOM
    dialogues = _toyhom_txt(toy / "Data_数据" / "IM_内科" / "内科.txt")
    dialogues += [(f"{r['title']},{r['ask']}", r["answer"]) for r in _toyhom_csv(toy / "样例_内科5000-6000.csv")]
    units += [("toyhom", f"问：{ask}\n答：{answer}") for ask, answer in dict(dialogues).items()]  # the csv overlaps 内科.txt
    # The BEIR sets' other passages repeat the above (cmrc2018 trial, the Toyhom csv's answers, XQuAD sentences).
    units += [("xquad", r["text"]) for r in _jsonl(shared / "xquad_zh2zh_para" / "corpus.jsonl")]
    classics = data / "chinese-poetry+chinese-poetry" / "四书五经"
    for name in ("daxue.json", "zhongyong.json", "mengzi.json"):
        raw = json.loads((classics / name).read_text(encoding="utf-8"))
        chapters = raw if isinstance(raw, list) else [raw]
        units += [("classics", "".join(ch.get("paragraphs", []))) for ch in chapters]
    return units


def poems(data: Path) -> list[tuple[str, str]]:
    """(source, "title author\\ntext") of every poem, one per passage."""
    base = data / "chinese-poetry+chinese-poetry"
    files = [("tang-song-shi", f) for f in sorted(glob.glob(str(base / "全唐诗" / "poet.*.json")))]
    files += [("yuan-qu", str(base / "元曲" / "yuanqu.json"))]
    files += [("five-dynasties", f) for f in sorted(glob.glob(str(base / "五代诗词" / "*" / "*.json")))]
    out = []
    for source, f in files:
        raw = json.loads(Path(f).read_text(encoding="utf-8"))
        for p in raw if isinstance(raw, list) else []:
            if not isinstance(p, dict) or not p.get("paragraphs"):
                continue
            body = "".join(p["paragraphs"]).strip()
            if len(body) >= 10:
                out.append((source, f"{p.get('title', '')} {p.get('author', '')}\n{body}".strip()))
    return out


def assemble(n: int, data: Path = DATA, shared: Path = SHARED, seed: int = SEED) -> list[dict[str, str]]:
    """Exactly n passages (deterministic for a seed): all prose, then a seeded sample of poems."""
    seen: set[str] = set()
    rows: list[dict[str, str]] = []

    def add(source: str, kind: str, text: str) -> None:
        text = text.strip()
        if len(text) >= 10 and text not in seen:
            seen.add(text)
            rows.append({"id": f"p{len(rows)}", "source": source, "kind": kind, "text": text})

    for source, unit in prose_units(data, shared):
        for passage in pack(unit):
            add(source, "prose", passage)
    if len(rows) >= n:
        return rows[:n]
    pool = poems(data)
    rng = np.random.default_rng(seed)
    for i in rng.permutation(len(pool)):
        if len(rows) >= n:
            break
        add(pool[i][0], "poem", pool[i][1])
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} distinct passages in {data}; need {n}")
    return rows


def questions(data: Path = DATA, shared: Path = SHARED, per_source: int = 250, seed: int = SEED) -> list[dict[str, str]]:
    """~4 x per_source real questions, a seeded sample of each source, duplicates dropped."""
    pools = {
        "cmrc2018": _squad_questions(data / "ymcui+cmrc2018" / "squad-style-data" / "cmrc2018_dev.json"),
        "drcd": _squad_questions(data / "DRCKnowledgeTeam+DRCD" / "DRCD_dev.json"),
        "xquad": [r["text"] for r in _jsonl(shared / "xquad_zh2zh_para" / "queries.jsonl")],
        "toyhom": [ask.split(",")[0] for ask, _ in _toyhom_txt(data / TOYHOM / "Data_数据" / "IM_内科" / "内科.txt")],
    }
    rng = np.random.default_rng(seed + 1)
    out, seen = [], set()
    for source, pool in pools.items():
        for i in rng.permutation(len(pool))[:per_source]:
            q = pool[i].strip()
            if q and q not in seen:
                seen.add(q)
                out.append({"source": source, "text": q})
    return out


def _digest(rows: list[dict[str, str]]) -> str:
    return hashlib.sha256("\n".join(r["text"] for r in rows).encode("utf-8")).hexdigest()[:16]


def _write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def mix(rows: list[dict[str, str]]) -> str:
    """One line: passages per source and kind, and the length spread."""
    by = Counter(f"{r['kind']}:{r['source']}" for r in rows)
    lengths = sorted(len(r["text"]) for r in rows)
    parts = ", ".join(f"{k} {v:,}" for k, v in sorted(by.items(), key=lambda kv: -kv[1]))
    n = len(lengths)
    return f"{parts}; characters per passage median {lengths[n // 2]}, p10 {lengths[n // 10]}, p90 {lengths[9 * n // 10]}"


Rows = list[dict[str, str]]


def embed_cached(n: int, cache: Path = CACHE, chunk: int = 5000) -> tuple[np.ndarray, np.ndarray, Rows, Rows]:
    """(passage vectors, query vectors, passages, questions); vectors are embedded once per text digest,
    passages in chunks saved as they finish, so an interrupted run resumes."""
    from rag.config import Settings
    from rag.encoders import load_encoder

    cache.mkdir(parents=True, exist_ok=True)
    rows, qs = assemble(n), questions()
    key = f"{n}-{_digest(rows)}"
    _write_jsonl(cache / f"passages{n}.jsonl", rows)
    _write_jsonl(cache / "questions.jsonl", qs)
    final = cache / f"vectors-{key}.npy"
    qfile = cache / f"queries-{_digest(qs)}.npy"
    encoder: Any = None
    if not final.exists():
        encoder = load_encoder(Settings(second_model=""), progress=True)
        parts = cache / f"parts-{key}"
        parts.mkdir(exist_ok=True)
        started = time.perf_counter()
        for a in range(0, n, chunk):
            part = parts / f"{a:07d}.npy"
            if part.exists():
                continue
            t = time.perf_counter()
            vectors = encoder.encode_passages([r["text"] for r in rows[a : a + chunk]])
            np.save(part.with_suffix(".tmp.npy"), vectors)
            part.with_suffix(".tmp.npy").replace(part)
            print(f"{a + len(vectors):,}/{n:,} passages, {len(vectors) / (time.perf_counter() - t):.1f}/s "
                  f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
        all_vectors = np.concatenate([np.load(parts / f"{a:07d}.npy") for a in range(0, n, chunk)])
        np.save(final.with_suffix(".tmp.npy"), all_vectors)
        final.with_suffix(".tmp.npy").replace(final)
        (cache / f"vectors-{key}.json").write_text(
            json.dumps({"engine": encoder.passage_engine, "model": encoder.name, "seconds": round(time.perf_counter() - started)}),
            encoding="utf-8",
        )
    if not qfile.exists():
        encoder = encoder or load_encoder(Settings(second_model=""), progress=True)
        np.save(qfile, np.concatenate([encoder.encode_queries([q["text"]]) for q in qs]))
    return np.load(final), np.load(qfile), rows, qs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--embed", action="store_true", help="embed and cache the vectors (else only print the mix)")
    args = parser.parse_args()
    if args.embed:
        x, q, rows, qs = embed_cached(args.n)
        print(f"{x.shape} passage vectors, {q.shape} query vectors cached in {CACHE}")
    else:
        rows, qs = assemble(args.n), questions()
    print(mix(rows))
    print(Counter(q["source"] for q in qs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
