"""Errors a user can act on: the CLI prints them as one line, the API as a 4xx/503 message."""


class RagError(Exception):
    """Base class for expected failures; the message says what to do next."""


class IndexMissingError(RagError):
    """No index has been built yet."""


class IndexInvalidError(RagError):
    """The index on disk is unreadable or was built with other settings."""


class CorpusError(RagError):
    """The corpus folder is missing, empty or unreadable."""


class IndexBusyError(RagError):
    """Another build holds the index lock and the caller chose not to wait."""
