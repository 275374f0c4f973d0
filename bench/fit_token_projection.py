"""Fit the late-interaction token projection (rag/late.py) on public Chinese passages.

e5's token vectors (the int8 engine's last hidden states, unit length, prompt and special tokens
dropped, as `rag index` keeps them) of cmrc2018's and toyhom's corpora, 200,000 sampled, are
centred and their first 128 principal directions kept: a fixed map, so every index and every
question uses the same one, and rows take 256 bytes instead of 768. Neither corpus is one the
projection is judged on for its gain (docs/quality.md, "Late interaction": XQuAD, the own sets).

English questions are centred on their own mean instead: that of XQuAD's 1,190 English
questions' token vectors, embedded as a search embeds an English question (with the query adapter).

    .venv/bin/python bench/fit_token_projection.py                 # writes rag/models/token_projection.npz
    .venv/bin/python bench/fit_token_projection.py --english-only  # keeps the PCA, fits the English mean again
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag import late  # noqa: E402
from rag.beir import load_benchmark  # noqa: E402
from rag.chunk import embedding_text  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.encoders import PRIMARY, load_encoders  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SETS = ("cmrc2018_trial_para", "toyhom_title_public")
ENGLISH = "xquad_en2zh_para"
VERSION = "token-pca128-v1"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--sample", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=late.PROJECTION_FILE)
    ap.add_argument("--english-only", action="store_true", help="keep --out's PCA; fit only the English questions' mean")
    args = ap.parse_args()
    encoder = load_encoders(Settings.from_env(), progress=True)[PRIMARY]
    hidden = encoder.dim
    identity = late.Projection("identity", np.zeros(hidden, dtype=np.float32), np.eye(hidden, dtype=np.float32))
    if args.english_only:
        projection = late.load_projection(args.out)
    else:
        rows = []
        for name in SETS:
            texts = [embedding_text(p) for p in load_benchmark(DATA / name).passages]
            rows += encoder.passage_tokens(texts, identity, progress=True)[1]  # type: ignore[attr-defined]
        x = np.concatenate(rows).astype(np.float32)
        x = x[np.random.default_rng(0).choice(len(x), min(len(x), args.sample), replace=False)]
        _, s, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
        projection = late.Projection(VERSION, x.mean(0), vt[: args.dim].T.copy())
        kept = float((s[: args.dim] ** 2).sum() / (s**2).sum())
        print(f"{len(x)} token rows of {', '.join(SETS)}; {args.dim} directions keep {kept:.1%} of the variance")
    questions = list(load_benchmark(DATA / ENGLISH).queries.values())
    english = np.concatenate(encoder.queries_with_tokens(questions, identity)[1]).astype(np.float32)  # type: ignore[attr-defined]
    late.save_projection(args.out, projection._replace(english_mean=english.mean(0)))
    print(f"English mean over {len(english)} token rows of {len(questions)} {ENGLISH} questions; wrote {args.out}")


if __name__ == "__main__":
    main()
