"""Answer a question with the best passages: each signal ranks candidates, then they are fused.

Signals: the primary dense encoder (e5), an optional second dense encoder (USE, strong for
English questions), and BM25 over jieba tokens, where English words are also looked up in
CC-CEDICT (translations chosen by the second encoder) so an English question can match
Chinese keywords. Fusion weights depend on the question's language (docs/quality.md has the
measurements behind them).
"""

from __future__ import annotations

import math
import sys
from typing import NamedTuple

import numpy as np

from rag import answerable, confidence, dense, late, rerank, spelling
from rag.answerable import Confidence
from rag.chunk import Passage, Span
from rag.config import Settings
from rag.encoders import PRIMARY, SECOND, TOKENS, Encoder
from rag.expand import EncoderSimilarity, character_readings, interleave, pinyin_readings, reverse_cedict, translate_english
from rag.fusion import Ranking, empty, rrf, zscore
from rag.highlight import best_sentence
from rag.index import Index
from rag.normalize import question_text
from rag.tokenize import detect_language, has_han, has_latin_words, tokenize, tokenize_remembered, words


class Hit(NamedTuple):
    rank: int  # 1-based
    score: float
    passage: Passage
    highlight: Span  # document offsets of the sentence that best answers


class Answer(NamedTuple):
    hits: list[Hit]
    # .confidence: P(a returned passage answers), 0..1; .answerable: it is at least the threshold
    confidence: Confidence


class Retriever:
    """Holds the encoders and the live index; `swap` replaces the index between two searches."""

    def __init__(self, settings: Settings, encoders: dict[str, Encoder], index: Index):
        self.settings = settings
        self.encoders = encoders
        self._index = index
        self.model = confidence.load_model(settings.confidence_model)  # a bad file fails at start, not mid-search
        self.ranker = rerank.load_model(settings.ranker_model) if settings.rerank else None
        # Translations of English words are chosen by the cross-lingual second encoder, when there is one.
        self.translation_similarity = EncoderSimilarity(encoders[SECOND]) if SECOND in encoders else None
        if settings.homophones:
            character_readings(settings.cache_dir)  # CC-CEDICT's, from the start-up pickle: before the index's homophones
        self._prepare(index)
        self.check_confidence_model(index)
        reverse_cedict(settings.cache_dir)  # load them now rather than inside the first English search
        pinyin_readings(settings.cache_dir)
        if settings.spelling:
            spelling.warm(settings.cache_dir)  # its word list and the dictionaries' words, now rather than in the first search
        if getattr(encoders[PRIMARY], "has_tokens", False):
            _ = encoders[PRIMARY].projection  # type: ignore[attr-defined]  # the token projection, before the first search

    def threshold(self, lang: str) -> float:
        """`answerable` is confidence >= this: the setting, or when it is negative the model's own for the language."""
        return self.settings.confidence_threshold if self.settings.confidence_threshold >= 0 else self.model.threshold_for(lang)

    @property
    def index(self) -> Index:
        return self._index

    def swap(self, index: Index) -> None:
        """Atomic for readers: one attribute assignment, and a search keeps the index it started with."""
        self._prepare(index)
        self._index = index
        self.check_confidence_model(index)

    def _prepare(self, index: Index) -> None:
        """What every search of `index` reads, computed once before its first search."""
        _ = index.vocabulary
        if self.settings.homophones:
            _ = index.homophones

    def check_confidence_model(self, index: Index) -> None:
        """One warning line when the index was built for another confidence model than the one loaded,
        and one when its token rows came without the piece counts late interaction's idf weights need."""
        if index.late is not None and index.piece_idf is None and self.settings.late_idf:
            print(
                "note: the index was built before late interaction's idf weights (token piece counts); its question tokens"
                " weigh alike until the next `rag index`, which counts them without embedding anything again",
                file=sys.stderr,
            )
        built_for = index.manifest.get("confidence", {}).get("version")
        if built_for and built_for != self.model.version:
            print(
                f"warning: the index was built with confidence model {built_for}, this server reads {self.model.version};"
                " `answerable` follows the loaded one (rebuild with `rag index --full`, or set RAG_CONFIDENCE_MODEL)",
                file=sys.stderr,
            )

    def keyword_tokens(self, question: str, index: Index) -> list[str]:
        """jieba tokens, plus Chinese translations of English words that the corpus contains."""
        return self.keyword_query(question, index)[0]

    def keyword_query(self, question: str, index: Index) -> tuple[list[str], list[list[str]]]:
        """BM25's tokens, and the question's keyword units for `answerable.coverage`.

        A unit is a Chinese token alone, or an English word with its translations.
        """
        tokens = tokenize(question)
        translations = (
            translate_english(question, index.vocabulary, self.settings.translations_per_word, similarity=self.translation_similarity)
            if has_latin_words(question)
            else []
        )
        units = [[t] for t in dict.fromkeys(tokens) if not has_latin_words(t)]  # English words come with their translations
        units += [[t.english, *t.chinese] for t in translations]
        return tokens + interleave(t.chinese for t in translations), units

    def dense_ranking(self, index: Index, role: str, query: np.ndarray, hub_penalty: float = 0.0) -> Ranking:
        """One encoder's best passages for a query vector; a passage embedded as sentences scores as its best one.

        With `hub_penalty`, each unit's cosine is lowered by that times its hubness (CSLS-style), after
        a deeper search by plain cosine.
        """
        depth, owners = self.settings.candidates, index.owners[role]
        per_passage = -(-len(owners) // max(1, len(index.passages)))  # units per passage, rounded up
        hubs = index.hubness.get(role) if hub_penalty else None
        hits = index.store.dense(role, query, depth * per_passage * (1 if hubs is None else 2))
        if hubs is not None and hits.ids.size:
            scores = hits.scores - np.float32(hub_penalty) * hubs[hits.ids]
            order = np.argsort(-scores, kind="stable")
            hits = Ranking(hits.ids[order], scores[order])
        return dense.best_per_passage(hits, owners, depth)

    def query_vectors(self, question: str, tokens: bool = False) -> dict[str, np.ndarray]:
        """The question embedded by each dense encoder, by role; with `tokens`, also the primary
        encoder's token rows (rag/late.py) under TOKENS, from the same forward pass."""
        primary = self.encoders[PRIMARY]
        out = {}
        if tokens and getattr(primary, "has_tokens", False):
            vectors, rows = primary.queries_with_tokens([question])  # type: ignore[attr-defined]
            out[PRIMARY], out[TOKENS] = vectors[0], rows[0]
        else:
            out[PRIMARY] = primary.encode_queries([question])[0]
        if SECOND in self.encoders:
            out[SECOND] = self.encoders[SECOND].encode_queries([question])[0]
        return out

    def wants_tokens(self, index: Index, lang: str) -> bool:
        """Whether a search of this index in this language uses late interaction (and so embeds the question's tokens)."""
        return index.late is not None and self.settings.late_weight(lang) > 0 and bool(getattr(self.encoders[PRIMARY], "has_tokens", False))

    def late_fused(self, index: Index, lang: str, rankings: list[Ranking], weights: list[float], fused: Ranking,
                   vectors: dict[str, np.ndarray], question: str = "") -> Ranking:  # fmt: skip
        """The three signals' fusion again with late interaction's MaxSim over their fused top candidates
        as a fourth signal (rag/late.py); `fused` as it was when the index or the question has no token rows.
        With the `question` and an index that counted its pieces, each question token weighs by its idf."""
        if index.late is None or TOKENS not in vectors or not self.settings.late_weight(lang):
            return fused
        scored = late.maxsim(vectors[TOKENS], *index.late, fused.ids[: self.settings.late_depth], self.token_weights(index, question))
        return self.fuse([*rankings, scored], [*weights, self.settings.late_weight(lang)]) if scored.ids.size else fused

    def token_weights(self, index: Index, question: str) -> np.ndarray | None:
        """Each of the question's token rows' share of MaxSim: its piece's idf over the index's passages
        (RAG_LATE_IDF); None, a plain mean, for an index built before the counts or with it off."""
        pieces = getattr(self.encoders[PRIMARY], "token_pieces", None)
        if index.piece_idf is None or pieces is None or not question or not self.settings.late_idf:
            return None
        return index.piece_idf.weights(pieces([question])[0])

    def rankings(
        self, question: str, index: Index, keywords: list[str] | None = None, vectors: dict[str, np.ndarray] | None = None
    ) -> list[Ranking]:
        """Each signal's own candidates, best first: primary dense, second dense, keyword."""
        keywords = self.keyword_tokens(question, index) if keywords is None else keywords
        vectors = self.query_vectors(question) if vectors is None else vectors
        penalty = {SECOND: self.settings.hub_penalty(detect_language(question))}
        out = []
        for role in (PRIMARY, SECOND):
            out.append(self.dense_ranking(index, role, vectors[role], penalty.get(role, 0.0)) if role in vectors else empty())
        out.append(index.store.keyword(keywords, self.settings.candidates))
        return out

    def question_tokens(self, question: str) -> int:
        """The question's length in the primary model's tokens (what a search costs); characters when it cannot tell."""
        count = getattr(self.encoders[PRIMARY], "count_tokens", None)
        return int(count(question)) if count is not None else len(question)

    def warm_up(self) -> None:
        """One search now, so that what the first search would load lazily is loaded: jieba's dictionary
        (0.8 s on the 2-core machine) and anything else a first search still finds cold; then the words
        English translations will be chosen by, embedded ahead (rag/expand.py, `similarity_words`)."""
        self.answer("医保", 1)
        if self.translation_similarity is not None:
            self.translation_similarity.warm_for(self._index.vocabulary)

    def search(self, question: str, top_k: int = 5) -> list[Hit]:
        return self.answer(question, top_k).hits

    def answer(
        self, question: str, top_k: int = 5, *, vectors: dict[str, np.ndarray] | None = None, exclude: np.ndarray | None = None
    ) -> Answer:
        """The best `top_k` passages, and how likely it is that they answer the question at all.

        `vectors` (the question's embeddings, when already computed) and `exclude` (passage ids
        masked out of every signal's ranking before fusion, as if the index lacked them) are for
        bench/train_confidence.py's leave-one-out questions; a search passes neither.
        """
        index = self._index
        # Traditional, full-width or shouted, a question searches as Simplified, half-width, sentence case (rag/normalize.py)
        question = question_text(question)
        if self.settings.spelling and has_latin_words(question):
            question = spelling.mended(question)  # English typos (rag/spelling.py)
        if self.settings.homophones and has_han(question):
            question = index.homophones.mended(question, words(question))  # input-method typos (rag/homophones.py)
        lang = detect_language(question)
        keywords, units = self.keyword_query(question, index)
        vectors = self.query_vectors(question, self.wants_tokens(index, lang)) if vectors is None else vectors
        rankings = self.rankings(question, index, keywords, vectors)
        if exclude is not None and exclude.size:
            rankings = [Ranking(r.ids[keep], r.scores[keep]) for r in rankings for keep in [~np.isin(r.ids, exclude)]]
        weights = self.settings.weights(lang)
        fused = self.fuse(rankings, weights)  # the three signals: what the confidence model was trained on
        ranked = self.late_fused(index, lang, rankings, weights, fused, vectors, question)
        # the fused top candidates reordered by the learned ranker, when on (rag/rerank.py)
        if self.ranker is not None:
            x = rerank.features_of(self, index, question, lang, rankings, weights, ranked, units, vectors, self.ranker.depth)
            ranked = rerank.reorder(self.ranker, lang, ranked, x)
        hits = []
        for rank, (pid, score) in enumerate(zip(ranked.ids[:top_k].tolist(), ranked.scores[:top_k].tolist(), strict=True), start=1):
            passage = index.passages[pid]
            similarity = self.sentence_similarities(index, pid, vectors)
            hits.append(Hit(rank, float(score), passage, best_sentence(passage, keywords, similarity)))
        return Answer(hits, self.confidence(index, lang, rankings, weights, fused, units, vectors, exclude, question, keywords))

    def fuse(self, rankings: list[Ranking], weights: list[float]) -> Ranking:
        """The signals' rankings as one, by the configured fusion."""
        if self.settings.fusion == "rrf":
            return rrf(rankings, k=self.settings.rrf_k, weights=weights)
        return zscore(rankings, weights)

    def confidence(
        self,
        index: Index,
        lang: str,
        rankings: list[Ranking],
        weights: list[float],
        fused: Ranking,
        units: list[list[str]],
        vectors: dict[str, np.ndarray] | None = None,
        exclude: np.ndarray | None = None,
        question: str = "",
        keywords: list[str] | None = None,
    ) -> Confidence:
        """How likely the search answers (rag/confidence.py), from what it already computed; no candidate is confidence 0."""
        if not fused.ids.size:
            return Confidence(False, 0.0, math.inf, 0.0)
        top = int(fused.ids[0])
        depth = self.settings.candidates
        # Signals that took part: weighted, and (dense ones) with an encoder loaded.
        roles = (PRIMARY, SECOND, None)
        taking_part = [bool(w) and (role is None or role in self.encoders) for w, role in zip(weights, roles, strict=True)]
        active = [r for r, on in zip(rankings, taking_part, strict=True) if on]
        spread = answerable.disagreement(active, top, depth)
        weighed = answerable.weigh(index.keyword, units)  # every share below reads these postings
        share = answerable.coverage(weighed, fused.ids[: answerable.COVERAGE_DEPTH].tolist())
        sentences = self.sentence_similarities(index, top, vectors) if vectors is not None else None
        passage = index.passages[top]
        span = best_sentence(passage, keywords or [], sentences)
        highlighted = passage.text[span.start - passage.start : span.end - passage.start]
        top_passage = (
            answerable.coverage(weighed, [top]),
            answerable.text_coverage(weighed, tokenize_remembered(highlighted)),
            highlighted,
        )
        features = confidence.search_features(
            lang,
            [r if on else None for r, on in zip(rankings, taking_part, strict=True)],
            fused,
            units,
            spread,
            share,
            confidence.known_share(weighed, exclude),
            sentences,
            depth,
            top_passage,
            question,
        )
        probability = self.model.probability(features)
        rule = self.settings.answerable_thresholds(lang)  # the retired rule, only when configured
        flag = answerable.is_answerable(spread, share, rule) if rule else probability >= self.threshold(lang)
        return Confidence(flag, probability, spread, share, features)

    def sentence_similarities(self, index: Index, pid: int, vectors: dict[str, np.ndarray]) -> np.ndarray | None:
        """The second encoder's cosine of the question with each sentence of passage `pid`, when it embeds sentences."""
        if SECOND not in vectors or index.manifest.get("chunking", {}).get("units", {}).get(SECOND) != "sentence":
            return None
        owners = index.owners[SECOND]
        first, end = np.searchsorted(owners, pid, side="left"), np.searchsorted(owners, pid, side="right")
        return np.asarray(index.embeddings[SECOND][first:end] @ vectors[SECOND])
