"""FAISS index lifecycle: choose, build, check recall, publish atomically, load, update.

Build and update share one lifecycle (:func:`index.lifecycle.gate_and_publish`): gate a
candidate on recall against exact search, write it as a version directory with an
:class:`IndexManifest`, record it, point ``CURRENT`` at it, clean up, all under one publish
lock (a build whose embeddings are older than the served ones is kept aside, not published).
``CURRENT`` (read by :func:`current_version`) is the one truth about which version is served.

Public API used by the CLI and the API service; see each module for the why.
"""

from index.build import BuildResult, build_index
from index.choose import IndexChoice, choose_index
from index.errors import (
    IndexActivationError,
    IndexBuildError,
    IndexLoadError,
    IndexNotFoundError,
    InvalidIndexVersion,
    NoActiveIndex,
    RecallTooLow,
    RecsysIndexError,
    StaleIndexBuild,
    UnknownIndexVersion,
)
from index.lifecycle import Candidate, Published, gate_and_publish
from index.load import LoadedIndex, load_active, load_index
from index.manifest import IndexManifest, read_manifest
from index.options import BuildOptions, GateOptions, UpdateOptions
from index.pointer import current_version, version_dir
from index.publish import (
    activate_index,
    active_manifest,
    cleanup_versions,
    index_info,
    list_indexes,
)
from index.update import UpdateResult, update_index

__all__ = [
    "BuildOptions",
    "BuildResult",
    "Candidate",
    "GateOptions",
    "IndexActivationError",
    "IndexBuildError",
    "IndexChoice",
    "IndexLoadError",
    "IndexManifest",
    "IndexNotFoundError",
    "InvalidIndexVersion",
    "LoadedIndex",
    "NoActiveIndex",
    "Published",
    "RecallTooLow",
    "RecsysIndexError",
    "StaleIndexBuild",
    "UnknownIndexVersion",
    "UpdateOptions",
    "UpdateResult",
    "activate_index",
    "active_manifest",
    "build_index",
    "choose_index",
    "cleanup_versions",
    "current_version",
    "gate_and_publish",
    "index_info",
    "list_indexes",
    "load_active",
    "load_index",
    "read_manifest",
    "update_index",
    "version_dir",
]
