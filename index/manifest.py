"""The on-disk layout of a published index: version directory, manifest and checksums.

``indexes/<version>/`` holds ``index.faiss`` (plus an optional ``excluded.npy`` of ids that
must never be returned) and ``manifest.json``, which records what the index is, how it passed
the recall gate, and the sha256 of every file, so a loader can refuse a file that was truncated
or replaced. In Python the manifest is one frozen :class:`IndexManifest`.

Formats (the ``format`` field):

* 1 (before): ``recall_at_10`` held the recall at ``recall_k`` neighbours, whatever ``recall_k``
  was; an updated index named the version it came from twice (``parent_version`` and
  ``updated_from``); the gate's query count and seed were not recorded.
* 2 (now): ``recall_at_k`` at ``k`` neighbours, one ``previous_version``, and the gate's
  ``queries`` (asked for), ``recall_queries`` (used) and ``seed``.

Old manifests still load: :meth:`IndexManifest.from_json` reads their keys; every manifest is
written in the current format.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from index.errors import IndexLoadError
from index.options import GateOptions
from recsys.durable import atomic_write

__all__ = [
    "EXCLUDED_FILE",
    "ID_MAP_FILE",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "MANIFEST_FILE",
    "METRIC",
    "IndexManifest",
    "new_version_name",
    "read_manifest",
    "write_manifest",
]

log = logging.getLogger(__name__)
INDEX_FILE = "index.faiss"
EXCLUDED_FILE = "excluded.npy"
ID_MAP_FILE = "id_map.npy"  # IVF only: stored ids and their (list, offset), see index.ids
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 2
METRIC = "inner_product"
REQUIRED = ("version", "model_version", "factory", "count", "dim", "metric", "sha256")


def new_version_name(now: datetime | None = None) -> str:
    """Sortable (by creation, to the microsecond), unique: ``20261125T030000.123456Z-1a2b3c``."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{secrets.token_hex(3)}"


@dataclass(frozen=True, kw_only=True)
class IndexManifest:
    """What one index version is, how it passed the recall gate, and its files' checksums.

    The lifecycle fills it in three steps: the build or update describes the candidate (identity
    and construction), the gate adds what it measured, :func:`index.publish.write_version` adds
    the files. A draft (no files yet) is what a refused candidate is recorded with.
    """

    # identity
    version: str
    model_version: str
    factory: str
    count: int  # vectors stored in the index file (hidden ones included)
    dim: int
    kind: str = "custom"  # an IndexKind value, or "custom" for a factory string
    format: int = FORMAT_VERSION
    metric: str = METRIC
    normalized: bool = True
    created_at: str = ""
    previous_version: str | None = None  # the version an update started from; None: a build
    embeddings_as_of: str | None = None  # embeddings written after this are not in the index
    # how it was chosen and built
    choice_reason: str = ""
    estimated_bytes: int = 0
    built_on: str = "cpu"
    gpu_float16: bool = False
    trained_count: int = 0  # vectors the trained part (centroids, codebooks) was built for
    train_size: int = 0
    build_seconds: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # the recall gate
    search_params: dict[str, int] = field(default_factory=dict)
    # per filter selectivity, the knob a selector-filtered search starts from (evaluate.py)
    filtered_search_params: list[dict[str, Any]] = field(default_factory=list)
    k: int = 10
    recall_at_k: float | None = None
    min_recall: float | None = None
    queries: int | None = None  # held-out queries asked for (None: not recorded, format 1)
    recall_queries: int = 0  # queries actually measured (at most the vector count)
    seed: int = 0
    recall_curve: list[dict[str, Any]] = field(default_factory=list)
    # files
    index_file: str = INDEX_FILE
    file_bytes: int = 0
    sha256: str = ""
    faiss_version: str = ""
    excluded_sha256: str | None = None
    excluded_count: int = 0
    id_map_sha256: str | None = None  # IVF: ids and their places, mapped by API workers
    # the co-watch neighbour lists published with the index (None: no graph)
    cowatch_sha256: str | None = None
    cowatch_videos: int = 0  # videos with partners
    cowatch_pairs: int = 0  # directed list entries

    @property
    def served_count(self) -> int:
        """Vectors a search can return (stored minus hidden)."""
        return self.count - self.excluded_count

    def gate(self) -> GateOptions:
        """The recall gate this index passed, as options (defaults for what format 1 lacks)."""
        defaults = GateOptions()
        return GateOptions(
            min_recall=defaults.min_recall if self.min_recall is None else self.min_recall,
            k=self.k,
            queries=defaults.queries if self.queries is None else self.queries,
            seed=self.seed,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], source: Path | str = "manifest") -> IndexManifest:
        """A manifest of any format this code knows; :class:`IndexLoadError` when unfit."""
        if not isinstance(data, dict):
            raise IndexLoadError(f"manifest {source} is not a JSON object; rebuild the index")
        try:
            version = int(data.get("format", 1))
        except (TypeError, ValueError):
            raise IndexLoadError(f"manifest {source} has an unreadable format field") from None
        if version > FORMAT_VERSION:
            raise IndexLoadError(
                f"manifest {source} has format {version}, newer than the {FORMAT_VERSION} this "
                "recsys reads: upgrade recsys, or rebuild the index with this one"
            )
        missing = [key for key in REQUIRED if key not in data]
        if missing:
            raise IndexLoadError(f"manifest {source} lacks {', '.join(missing)}; rebuild the index")
        if data["metric"] != METRIC:
            raise IndexLoadError(
                f"manifest {source} has metric {data['metric']!r}; only {METRIC!r} is served"
            )
        values = dict(data)
        if version < 2:
            values = _from_format_1(values)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            log.debug("manifest %s: ignoring unknown keys %s", source, unknown)
        values = {key: value for key, value in values.items() if key in known}
        values.setdefault("trained_count", values["count"])
        try:
            for name in ("count", "dim", "k", "trained_count"):
                values[name] = int(values[name])
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise IndexLoadError(
                f"manifest {source} is malformed ({error}); rebuild the index"
            ) from None


def _from_format_1(values: dict[str, Any]) -> dict[str, Any]:
    """Format-1 keys under their current names."""
    if "recall_at_k" not in values and "recall_at_10" in values:
        values["recall_at_k"] = values["recall_at_10"]
    if "k" not in values:
        values["k"] = values.get("recall_k", 10)
    if "previous_version" not in values:
        values["previous_version"] = values.get("updated_from") or values.get("parent_version")
    for old in ("recall_at_10", "recall_k", "updated_from", "parent_version"):
        values.pop(old, None)
    return values


def write_manifest(directory: Path, manifest: IndexManifest) -> None:
    """Write ``manifest.json`` durably (unique temp file, fsync, rename, fsync directory)."""
    atomic_write(
        directory / MANIFEST_FILE, json.dumps(manifest.to_json(), indent=2, sort_keys=True).encode()
    )


def read_manifest(directory: Path) -> IndexManifest:
    """The manifest of one version directory, with its required keys checked."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise IndexLoadError(
            f"index directory {directory} has no {MANIFEST_FILE}; it is not a published index "
            "(rebuild with `recsys index build`)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise IndexLoadError(f"manifest {path} is unreadable: {error}") from error
    return IndexManifest.from_json(data, path)
