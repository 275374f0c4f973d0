"""Bilingual (Chinese / English) retrieval over a folder of documents, with exact citations.

The pipeline, one module per step: ingest -> chunk -> (encoders, tokenize) -> index -> retrieve -> api/cli.
"""

__version__ = "0.1.0"
