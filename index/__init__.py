"""FAISS index lifecycle: choose, build, check recall, publish atomically, load, update.

Public API used by the CLI and the API service; see each module for the why.
"""

from index.build import BuildOptions, BuildResult, build_index
from index.choose import IndexChoice, choose_index
from index.errors import (
    IndexActivationError,
    IndexBuildError,
    IndexLoadError,
    RecallTooLow,
    RecsysIndexError,
)
from index.load import LoadedIndex, load_active, load_index
from index.pointer import current_version, version_dir
from index.publish import activate_index, cleanup_versions, index_info, list_indexes
from index.update import UpdateResult, update_index

__all__ = [
    "BuildOptions",
    "BuildResult",
    "IndexChoice",
    "UpdateResult",
    "activate_index",
    "build_index",
    "choose_index",
    "cleanup_versions",
    "index_info",
    "list_indexes",
    "update_index",
    "IndexActivationError",
    "IndexBuildError",
    "IndexLoadError",
    "LoadedIndex",
    "RecallTooLow",
    "RecsysIndexError",
    "current_version",
    "version_dir",
    "load_active",
    "load_index",
]
