"""Write tests/data/beir-sample: the shipped corpus's passages and 40 of the own set's questions in
the BEIR layout, so `rag eval --beir tests/data/beir-sample` (the README's example) runs in the repo.

    .venv/bin/python bench/beir_sample.py
"""

from __future__ import annotations

import json
from pathlib import Path

from rag.chunk import chunk
from rag.evaluate import load_questions, relevant_passages, squash
from rag.ingest import load_corpus

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "beir-sample"


def main() -> None:
    docs, _ = load_corpus(ROOT / "corpus")
    passages = [p for d in docs for p in chunk(d)]
    texts = [squash(p.text) for p in passages]
    questions = [q for q in load_questions(ROOT / "tests" / "data" / "questions.jsonl") if q.answers]
    chosen = [q for q in questions if q.lang == "zh"][:20] + [q for q in questions if q.lang == "en"][:20]
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "corpus.jsonl", "w", encoding="utf-8") as f:
        for i, p in enumerate(passages):
            f.write(json.dumps({"_id": f"p{i}", "title": " > ".join(p.section), "text": p.text}, ensure_ascii=False) + "\n")
    with open(OUT / "queries.jsonl", "w", encoding="utf-8") as f:
        for q in chosen:
            f.write(json.dumps({"_id": q.id, "text": q.question}, ensure_ascii=False) + "\n")
    with open(OUT / "qrels.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q in chosen:
            for i in sorted(relevant_passages(q.answers, texts), key=int):
                f.write(f"{q.id}\tp{i}\t1\n")
    print(f"wrote {len(passages)} passages and {len(chosen)} questions to {OUT}")


if __name__ == "__main__":
    main()
