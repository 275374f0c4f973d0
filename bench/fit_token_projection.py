"""Fit the late-interaction token projection (rag/late.py) on public Chinese passages.

e5's token vectors (the int8 engine's last hidden states, unit length, prompt and special tokens
dropped, as `rag index` keeps them) of cmrc2018's and toyhom's corpora, 200,000 sampled, are
centred and their first 128 principal directions kept: a fixed map, so every index and every
question uses the same one, and rows take 256 bytes instead of 768. Neither corpus is one the
projection is judged on for its gain (docs/quality.md, "Late interaction": XQuAD, the own sets).

    .venv/bin/python bench/fit_token_projection.py            # writes rag/models/token_projection.npz
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
VERSION = "token-pca128-v1"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--sample", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=late.PROJECTION_FILE)
    args = ap.parse_args()
    encoder = load_encoders(Settings.from_env(), progress=True)[PRIMARY]
    hidden = encoder.dim
    identity = late.Projection("identity", np.zeros(hidden, dtype=np.float32), np.eye(hidden, dtype=np.float32))
    rows = []
    for name in SETS:
        texts = [embedding_text(p) for p in load_benchmark(DATA / name).passages]
        rows += encoder.passage_tokens(texts, identity, progress=True)[1]  # type: ignore[attr-defined]
    x = np.concatenate(rows).astype(np.float32)
    x = x[np.random.default_rng(0).choice(len(x), min(len(x), args.sample), replace=False)]
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    kept = float((s[: args.dim] ** 2).sum() / (s**2).sum())
    late.save_projection(args.out, late.Projection(VERSION, mean, vt[: args.dim].T.copy()))
    print(f"{len(x)} token rows of {', '.join(SETS)}; {args.dim} directions keep {kept:.1%} of the variance; wrote {args.out}")


if __name__ == "__main__":
    main()
