"""Traditional Chinese read as Simplified, so a question or a document in either script finds the other.

jieba's dictionary, the shipped corpus and most of e5's Chinese are Simplified. Asked in Traditional
(外國人可以用支付寶激活醫保電子憑證嗎), the own set's Chinese questions fell from MRR@10 0.920 to 0.845, and
the held-out set's from 0.929 to 0.838 (docs/quality.md): jieba cuts 醫保電子憑證 into pieces no passage
holds. So every search reads its question through OpenCC's tables (Hong Kong variant characters
first, then Traditional to Simplified, phrases before characters: `t2s`), and what a build
embeds and tokenizes and what a highlight matches is read the same way, so a Traditional document meets
a question in either script. Passages, citations and offsets keep the document's own characters.

The tables come with `opencc-python-reimplemented` (Apache-2.0; nothing downloaded). Text holding no
character the conversion can change is returned as it was after one set test (~1 µs for a question,
~9 µs for a 300-character passage), so most Simplified text, English and numbers cost nothing
measurable; a Traditional question is converted in ~0.05 ms. The tables and that set are made once per
process, at the first search (~0.1 s; `rag serve`'s warm-up search pays it once listening, under a lock).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

_TABLES = ("TSPhrases.txt", "TSCharacters.txt")  # OpenCC's t2s: Traditional to Simplified, phrases first
_HK_VARIANTS = "HKVariantsRev.txt"  # Hong Kong forms (衞 for 衛) -> standard Traditional
_state: dict[str, Any] = {}
_LOADING = threading.Lock()


def _load() -> tuple[Any, dict[int, str], frozenset[str]]:
    """The t2s converter, the Hong Kong variants to map first, and every character whose presence can make the
    two change a text (a text holding none is left as it is); made once, under a lock.

    OpenCC's own hk2s chain also reads Simplified 抬 as the Hong Kong form of 擡 and leaves 擡: so a variant
    is mapped only where hk2s ends on a Simplified character (one s2t would change back). A character counts
    as changing when t2s changes it alone (國 -> 国), or where a phrase t2s changes differs (反覆 -> 反复: 覆).
    """
    if "converter" not in _state:
        with _LOADING:
            if "converter" not in _state:
                import opencc
                from opencc import OpenCC

                folder = Path(opencc.__file__).parent / "dictionary"

                def keys(name: str) -> set[str]:
                    return {k for line in (folder / name).read_text(encoding="utf-8").splitlines() if (k := line.split("\t", 1)[0])}

                converter, hk2s, s2t = OpenCC("t2s"), OpenCC("hk2s"), OpenCC("s2t")
                variants = {  # only where hk2s ends on a Simplified form (衞 -> 卫), not on another Traditional one (抬 -> 擡)
                    ord(c): v
                    for c in keys(_HK_VARIANTS)
                    if len(c) == 1 and (v := hk2s.convert(c)) != converter.convert(c) and s2t.convert(v) != v
                }
                changed: set[str] = {chr(c) for c in variants}
                for key in set().union(*(keys(name) for name in _TABLES)):
                    value = converter.convert(key)
                    if value == key:
                        continue
                    if len(key) == len(value):  # the characters that differ, or all of an uneven phrase
                        changed.update(a for a, b in zip(key, value, strict=True) if a != b)
                    else:
                        changed.update(key)
                _state["variants"], _state["changed"] = variants, frozenset(changed)
                _state["converter"] = converter
    return _state["converter"], _state["variants"], _state["changed"]


@lru_cache(maxsize=8192)
def to_simplified(text: str) -> str:
    """`text` with Traditional Chinese characters and phrases in their Simplified form; the rest as it was.

    Remembered: the sentences a highlight reads come back search after search, and a 300-character
    Traditional passage takes ~0.6 ms to convert.
    """
    converter, variants, changed = _load()
    if changed.isdisjoint(text):
        return text
    converted: str = converter.convert(text.translate(variants))
    return converted
