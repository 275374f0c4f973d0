"""Chinese input-method typos in a question, mended against the corpus's words (医保电子平证 -> 医保电子凭证).

Why: Chinese is typed as pinyin and the input method offers every character read that way, so
the usual typo is a homophone: 平证 for 凭证, 实替 for 实体. The typo'd word matches no keyword, is
split into single characters by jieba, and blurs the question's vectors. On the own set, one such
typo in each Chinese question lowered Chinese MRR@10 0.920 -> 0.864-0.887 (docs/quality.md,
"Chinese homophone typos").

How: the question is segmented (jieba, precise mode). A span of 2-4 Chinese characters that
starts and ends between tokens (or inside a token jieba's dictionary lacks: its HMM glues a typo
to its neighbours), holds some of such an unknown token, and is neither a corpus word, nor a word
jieba knows, nor written in the corpus (each pair of its neighbouring characters occurs in some
passage: names the corpus spells so) is replaced by the corpus word of the same length that
differs in one character read the same way (toneless pinyin, any of the character's readings);
among several, the one in most passages. A function word standing alone (的, 以) is never the
changed character. So 可以保证 and 住的地方 stay, and so does a typo of a word the corpus lacks.
On the public Chinese sets (open-domain questions full of names) it changes 5 of 1,190 XQuAD and
32 of 1,002 CMRC questions, mostly wrongly (MRR@10 -0.0016 on CMRC, the rest within 0.001).
Only what is searched changes; the answer cites the passages' text as always.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Container, Iterable

from rag.expand import character_readings
from rag.tokenize import STOPWORDS

_HAN = re.compile(r"[\u4e00-\u9fff]+")
LENGTHS = range(2, 5)  # characters in a mended word: a single character is too ambiguous, 5+ rarely typed as one


Key = tuple[str, int, str]  # (the word with one character masked, where, how that character reads)


class Homophones:
    """The corpus's Chinese words of 2-4 characters, found by a form with one character read alike."""

    def __init__(
        self, vocabulary: Iterable[str], passages_with: Callable[[str], int], known: Callable[[str], bool], texts: Iterable[str] = ()
    ):
        """`passages_with(word)` counts the passages that hold a corpus word; `known(word)`: a dictionary word;
        `texts`: the passages, whose character pairs are never a typo (a name the corpus spells so: 锦地罗)."""
        sounds = character_readings()
        self.pairs = frozenset(run[k : k + 2] for text in texts for run in _HAN.findall(text) for k in range(len(run) - 1))
        self.vocabulary = frozenset(w for w in vocabulary if len(w) in LENGTHS and _HAN.fullmatch(w))
        self.known = known
        self.by_key: dict[Key, list[str]] = defaultdict(list)
        for word in self.vocabulary:
            for i, char in enumerate(word):
                for sound in sounds.get(char, ()):
                    self.by_key[(word[:i] + "_" + word[i + 1 :], i, sound)].append(word)
        self._passages_with = passages_with

    def correction(self, span: str, kept: Container[int] = ()) -> str | None:
        """The corpus word `span` was likely typed for (平证 -> 凭证), or None; the characters at `kept` stay."""
        sounds = character_readings()
        candidates = {
            word
            for i, char in enumerate(span)
            if i not in kept
            for sound in sounds.get(char, ())
            for word in self.by_key.get((span[:i] + "_" + span[i + 1 :], i, sound), ())
        }
        return max(candidates, key=lambda w: (self._passages_with(w), w)) if candidates else None

    def written(self, span: str) -> bool:
        """Every pair of neighbouring characters of `span` is somewhere in the corpus's text."""
        return bool(self.pairs) and all(span[k : k + 2] in self.pairs for k in range(len(span) - 1))

    def mended(self, question: str, tokens: list[str]) -> str:
        """`question` with its typo'd words replaced; `tokens` is its precise-mode segmentation, in order.

        A replaced span starts and ends between tokens, or inside a token jieba's dictionary does not
        know (its HMM glues unknown characters to their neighbours: 结酸能 holds the typo 结酸)."""
        if "".join(tokens) != question:  # not this question's segmentation: nothing to align spans with
            return question
        cuts, loose, at = {0}, [False] * len(question), 0  # loose: the character is in a token jieba's dictionary lacks
        kept: set[int] = set()  # a function word standing alone (的 reads di too, yet 住的 is no typo of 住地)
        for token in tokens:
            unknown = not self.known(token)  # a multi-character word jieba's HMM made up, or a character it lacks
            if unknown and len(token) > 1:
                cuts.update(range(at + 1, at + len(token)))
            if token in STOPWORDS:
                kept.update(range(at, at + len(token)))
            loose[at : at + len(token)] = [unknown] * len(token)
            at += len(token)
            cuts.add(at)
        out, i = [], 0
        while i < len(question):
            fix = self._fix_at(question, i, cuts, loose, kept) if i in cuts else None
            word, i = fix if fix is not None else (question[i], i + 1)
            out.append(word)
        return "".join(out)

    def _fix_at(self, question: str, i: int, cuts: set[int], loose: list[bool], kept: set[int]) -> tuple[str, int] | None:
        """The corpus word for the longest span from `i` that reads as a typo of one, and where the span ends."""
        for j in range(i + LENGTHS[-1], i + LENGTHS[0] - 1, -1):
            span = question[i:j]
            if j not in cuts or len(span) != j - i or not _HAN.fullmatch(span) or not any(loose[i:j]):
                continue
            if span in self.vocabulary or self.known(span) or self.written(span):
                continue
            word = self.correction(span, {k - i for k in kept if i <= k < j})
            if word is not None:
                return word, j
        return None
