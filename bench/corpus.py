"""A synthetic corpus of N bilingual documents, deterministic for a seed, for index-build benchmarks.

Documents look like the shipped ones: a title line, then sections of headings and prose. Chinese
sentences are drawn from the shipped corpus and English ones from templates; every document gets
its own title, place and numbers, so no two passages embed the same text.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITIES = (
    "北京",
    "上海",
    "广州",
    "深圳",
    "杭州",
    "成都",
    "武汉",
    "西安",
    "南京",
    "重庆",
    "天津",
    "苏州",
    "长沙",
    "郑州",
    "青岛",
    "厦门",
    "昆明",
    "大连",
    "沈阳",
    "合肥",
)
TOPICS = ("医保电子凭证", "电子社保卡", "异地就医备案", "门诊报销", "药店购药", "家庭共济", "生育津贴", "住院结算", "慢病认定", "参保缴费")
HEADINGS = ("办理条件", "所需材料", "办理流程", "常见问题", "注意事项", "费用说明", "线上渠道", "线下网点", "政策依据", "咨询方式")
EN_TEMPLATES = (
    "Residents of {city} can apply for the {topic} online in about {n} minutes.",
    "Bring your passport and residence permit when you visit service point No. {n} in {city}.",
    "The {topic} service in {city} is open from 9:00 to {h}:00 on weekdays.",
    "If the app shows error {n}, sign out, update it, and try again after {h} minutes.",
    "Foreign nationals in {city} may bind up to {n} family members to one {topic} account.",
    "Refunds for the {topic} usually arrive within {n} working days in {city}.",
)


def chinese_sentences() -> list[str]:
    """Sentences of the shipped corpus, 12-120 characters long."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "corpus").glob("*.txt")))
    parts = (re.sub(r"^(?:[-•*·]\s*|\d{1,2}\.\s*)", "", s.strip()) for s in re.split(r"(?<=[。！？])|\n", text))
    return sorted({s for s in parts if 12 <= len(s) <= 120 and s[-1] in "。！？"})


def document(i: int, rng: random.Random, pool: list[str]) -> str:
    """One document of about 900 characters: a title and four sections."""
    city, topic = rng.choice(CITIES), rng.choice(TOPICS)
    lines = [f"{city}{topic}办理指南(第{i}号)", ""]
    for heading in rng.sample(HEADINGS, 4):
        lines.append(heading)
        sentences = rng.sample(pool, 3)
        sentences.insert(rng.randrange(4), f"{city}第{i}号服务点的{heading}以当地{rng.randint(2020, 2026)}年规定为准。")
        if rng.random() < 0.4:
            template = rng.choice(EN_TEMPLATES)
            sentences.append(template.format(city=city, topic=topic, n=rng.randint(2, 60), h=rng.randint(16, 21)))
        lines.append("".join(sentences))
        lines.append("")
    return "\n".join(lines)


def generate(folder: Path, documents: int, seed: int = 7) -> list[Path]:
    """Write `documents` files doc-0000.txt ... into `folder` (replacing what is there)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.txt"):
        old.unlink()
    rng, pool = random.Random(seed), chinese_sentences()
    paths = []
    for i in range(documents):
        path = folder / f"doc-{i:04d}.txt"
        path.write_text(document(i, rng, pool), encoding="utf-8")
        paths.append(path)
    return paths
