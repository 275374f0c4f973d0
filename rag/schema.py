"""The search request and answer, shared by the HTTP API and `rag ask --json`."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from rag.retrieve import Answer

MAX_QUESTION_CHARS = 2000
MAX_TOP_K = 50
# e5 reads at most 512 tokens, and a search costs about its length: 256 tokens is ~250 Chinese
# characters or ~180 English words, far past any question of the own or public sets (8-60 tokens).
MAX_QUESTION_TOKENS = 256
# Control characters a person never types (tab, newline and carriage return are kept).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_question(value: str) -> str:
    """The one check every question passes, from HTTP and from the CLI: text a person could type."""
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    if len(value) > MAX_QUESTION_CHARS:
        raise ValueError(f"is {len(value)} characters long; the limit is {MAX_QUESTION_CHARS}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        raise ValueError(f"is not valid Unicode text (lone surrogate U+{ord(bad):04X} at character {exc.start})") from None
    control = _CONTROL.search(value)
    if control:
        raise ValueError(f"contains the control character U+{ord(control.group()):04X} at character {control.start()}")
    return value


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(description="Free-text question in Chinese or English.", examples=["外国人可以用支付宝激活医保电子凭证吗?"])
    top_k: StrictInt = Field(5, ge=1, le=MAX_TOP_K, description="How many passages to return (1-50).")

    @field_validator("question")
    @classmethod
    def _question_has_text(cls, value: str) -> str:
        return check_question(value)


def check_question_tokens(tokens: int) -> None:
    """The model-side limit, checked by the retriever's tokenizer once the text itself is valid."""
    if tokens > MAX_QUESTION_TOKENS:
        raise ValueError(
            f"is {tokens} model tokens long; the limit is {MAX_QUESTION_TOKENS} (about 250 Chinese characters or 180 English words):"
            " ask about one thing at a time"
        )


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: `detail` is one line naming the field, `errors` the same in parts."""

    detail: str = Field(description="What is wrong, `field: problem`, separated by `; `.")
    errors: list[ErrorItem] = Field(default_factory=list)


class Citation(BaseModel):
    document: str = Field(description="Path of the source file, relative to the corpus folder.")
    title: str
    section: list[str] = Field(description="Document title > heading > sub-heading.")
    start: int = Field(description="Offset of the first character in the document's text.")
    end: int = Field(description="Offset after the last character: text == document[start:end].")
    line_start: int
    line_end: int
    format: str = Field(description="The document's format: txt, md, pdf, docx or html.")
    page_start: int | None = Field(description="1-based PDF page of the passage's first character; null without pages.")
    page_end: int | None = Field(description="1-based PDF page of its last character; null without pages.")


class Highlight(BaseModel):
    start: int = Field(description="Document offset of the sentence that best answers the question.")
    end: int


class PassageOut(BaseModel):
    rank: int
    score: float
    text: str
    citation: Citation
    highlight: Highlight


class SearchResponse(BaseModel):
    question: str
    took_ms: float
    answerable: bool = Field(
        description="False when the corpus most likely does not answer the question (the passages are still the best"
        " found): `confidence` is below the configured threshold. docs/quality.md says how often it is right."
    )
    confidence: float = Field(
        ge=0, le=1, description="The probability that a returned passage answers the question, learned from the search's own signals."
    )
    passages: list[PassageOut]


class Page(BaseModel):
    number: int = Field(description="1-based page number.")
    start: int = Field(description="Offset of the page's first character in `text`.")
    end: int


class DocumentOut(BaseModel):
    """A document as the index holds it: `text[start:end]` of any citation of it is that passage's text."""

    id: str = Field(description="Path relative to the corpus folder.")
    format: str
    title: str | None
    sha256: str = Field(description="sha256 of the file's bytes when it was indexed.")
    length: int = Field(description="Characters in the whole canonical text.")
    start: int = Field(description="Offset of the first character returned (0 without ?start).")
    end: int = Field(description="Offset after the last character returned.")
    text: str = Field(description="The canonical text, or its [start:end] slice.")
    pages: list[Page] = Field(description="Page boundaries (PDF); empty for formats without pages.")


def to_response(question: str, answer: Answer, took_ms: float) -> SearchResponse:
    hits = answer.hits
    return SearchResponse(
        question=question,
        took_ms=round(took_ms, 3),
        answerable=answer.confidence.answerable,
        confidence=round(answer.confidence.confidence, 4),
        passages=[
            PassageOut(
                rank=h.rank,
                score=round(h.score, 6),
                text=h.passage.text,
                citation=Citation(
                    document=h.passage.doc_id,
                    title=h.passage.title,
                    section=list(h.passage.section),
                    start=h.passage.start,
                    end=h.passage.end,
                    line_start=h.passage.line_start,
                    line_end=h.passage.line_end,
                    format=h.passage.format,
                    page_start=h.passage.page_start,
                    page_end=h.passage.page_end,
                ),
                highlight=Highlight(start=h.highlight.start, end=h.highlight.end),
            )
            for h in hits
        ],
    )


def format_validation_error(errors: list[dict[str, Any]]) -> str:
    """`field: problem` for each error, e.g. `top_k: Input should be less than or equal to 50`."""
    parts = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query")]
        field = ".".join(loc) or "body"
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{field}: {msg}")
    return "; ".join(parts)
