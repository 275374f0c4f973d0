"""Canonical-text rules shared by the readers: joining broken lines, normalising font artefacts.

A line break inside a sentence is joined with no space between Chinese characters (a reader
searches 医保电子凭证, not 医保 电子凭证) and with one space between words of other scripts.
"""

from __future__ import annotations

import re
import unicodedata

# Characters after which (or before which) a line break is not a word space: CJK ideographs,
# kana, hangul, and the CJK and full-width punctuation that sits between them.
CJK = (
    "\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003134f"
)
_CJK_CHAR = re.compile(f"[{CJK}]")
_BREAK = re.compile(f"(?<=[{CJK}])[ \\t\\r\\f\\v]*\\n\\s*(?=[{CJK}])")


def is_cjk(ch: str) -> bool:
    return bool(ch) and bool(_CJK_CHAR.match(ch))


def join_breaks(text: str) -> str:
    """Remove line breaks (and the spaces around them) between two CJK characters; others stay whitespace."""
    return _BREAK.sub("", text)


def join_lines(lines: list[str]) -> str:
    """One paragraph from its visual lines: no space at a CJK boundary, one space between other words."""
    out = ""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if not out or is_cjk(out[-1]) or is_cjk(line[0]) or out.endswith("-"):
            out += line
        else:
            out += " " + line
    return out


# Kept as they are although NFKC would change them: full-width punctuation is how Chinese text is
# written (NFKC turns "："  into ":" and "，" into ","), and the ideographic space is handled as whitespace.
KEEP = frozenset("，。、；：？！“”‘’（）《》〈〉【】〔〕「」『』…—～·￥　")


def normalise(text: str) -> str:
    """Undo the compatibility characters fonts put in a text layer, keeping Chinese punctuation.

    Kangxi radicals (U+2F00-U+2FDF), CJK radicals supplement, CJK compatibility ideographs,
    full-width ASCII letters and digits, ligatures (ﬁ) and the like become the ordinary
    characters a person types; NFKC does that per character, except for the punctuation in KEEP.
    """
    if text.isascii():
        return text
    return "".join(ch if ch in KEEP or ch.isascii() else _nfkc(ch) for ch in text)


def _nfkc(ch: str) -> str:
    out = unicodedata.normalize("NFKC", ch)
    if out == ch and "\u2e80" <= ch <= "\u2eff":
        return CJK_RADICALS_SUPPLEMENT.get(ch, ch)
    return out


# The CJK radicals supplement has no NFKC decomposition; fonts use these code points for the common
# simplified forms. Mapped: only those whose glyph is an ordinary ideograph (not a partial component).
CJK_RADICALS_SUPPLEMENT = {
    "\u2e95": "彐",
    "\u2ec5": "见",
    "\u2ec6": "角",
    "\u2ec8": "讠",
    "\u2ecf": "阝",
    "\u2ed4": "门",
    "\u2ed6": "阝",
    "\u2ee2": "马",
    "\u2ee3": "骨",
    "\u2ee4": "鬼",
    "\u2ee8": "麦",
    "\u2eea": "黾",
    "\u2ef0": "龙",
    "\u2ef2": "龟",
    "\u2ef3": "龟",
    "\u2ed8": "青",
    "\u2edb": "风",
    "\u2edc": "飞",
    "\u2ede": "食",
    "\u2ee0": "饣",
    "\u2ec4": "西",
    "\u2ed7": "雨",
    "\u2eac": "示",
    "\u2ead": "礻",
    "\u2eaa": "疋",
    "\u2ea4": "爫",
    "\u2ea6": "丬",
    "\u2e9f": "母",
    "\u2ea0": "民",
    "\u2e98": "扌",
    "\u2e99": "攵",
    "\u2e9b": "旡",
    "\u2e9c": "日",
    "\u2e9e": "歺",
    "\u2e8a": "卜",
    "\u2e8b": "㔾",
    "\u2e81": "厂",
    "\u2e86": "冂",
    "\u2e87": "几",
    "\u2e89": "刂",
    "\u2e8e": "兀",
    "\u2e8f": "尢",
    "\u2e90": "尢",
    "\u2e92": "巳",
    "\u2e93": "幺",
    "\u2e94": "彑",
    "\u2e96": "忄",
    "\u2e9d": "月",
}
