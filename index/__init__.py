"""FAISS index lifecycle: choose, build, check recall, publish atomically, load, update.

Public API used by the CLI and the API service; see each module for the why.
"""

from index.errors import (
    IndexActivationError,
    IndexBuildError,
    IndexLoadError,
    RecallTooLow,
    RecsysIndexError,
)
from index.load import LoadedIndex, load_active, load_index
from index.pointer import current_version

__all__ = [
    "IndexActivationError",
    "IndexBuildError",
    "IndexLoadError",
    "LoadedIndex",
    "RecallTooLow",
    "RecsysIndexError",
    "current_version",
    "load_active",
    "load_index",
]
