"""Read the corpus folder: .txt, .md, .pdf, .docx, .html/.htm, one reader module per format.

A reader turns a file's bytes into the document's canonical text (the text every citation offset
indexes) plus its structure (blocks, pages). See docs/formats.md for the rules per format.
"""

from rag.ingest.base import (
    Block,
    Document,
    PageSpan,
    ReaderError,
    SkippedFile,
    document_from_json,
    document_to_json,
)
from rag.ingest.corpus import FORMATS, MAX_FILE_BYTES, SUFFIXES, corpus_files, load_corpus, read_document

__all__ = [
    "FORMATS",
    "MAX_FILE_BYTES",
    "SUFFIXES",
    "Block",
    "Document",
    "PageSpan",
    "ReaderError",
    "SkippedFile",
    "corpus_files",
    "document_from_json",
    "document_to_json",
    "load_corpus",
    "read_document",
]
