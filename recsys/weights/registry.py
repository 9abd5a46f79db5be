"""Known pretrained weights: local name → upstream URL or installed package, checksum, licence.

Each entry names the file it is stored as under ``$RECSYS_HOME/weights`` (or, for weights that
install as a Python package, the file inside that package) and the stage-A encoder that reads
it. ``sha256`` is the full checksum when it is recorded here; otherwise ``sha256_prefix`` is the
hash prefix the publisher put in the file name (the torch.hub convention, checked the same way
torch.hub checks it). An entry with neither can only be used after a person vouches for the file
(``recsys weights verify NAME --trust-unverified``).

The entries come from the encoders' declarations (:mod:`recsys.features.encoder_registry`
adds each encoder's weights as a source), so a weights file is described next to the encoder
that reads it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from recsys.errors import NotFoundError


@dataclass(frozen=True)
class WeightsEntry:
    """One downloadable weights file."""

    name: str  # the registry name (also the local file's stem)
    encoder: str  # the stage-A component that reads it, e.g. "audio=vggish"
    url: str
    filename: str  # under $RECSYS_HOME/weights (also the mirror's), or inside ``package``
    licence: str
    sha256: str | None = None
    sha256_prefix: str | None = None  # from the upstream file name (torch.hub convention)
    size: int | None = None  # bytes, when known exactly
    approx_mb: float | None = None  # megabytes, when only that is published
    note: str = ""
    #: Import name of the installed package that ships the file (nothing to fetch), or "".
    package: str = ""

    @property
    def verifiable(self) -> bool:
        return bool(self.sha256 or self.sha256_prefix)

    @property
    def distribution(self) -> str:
        """The pip name of ``package`` (what to install or reinstall)."""
        return self.package.replace("_", "-")


def prefix_of(url: str) -> str | None:
    """The publisher's hash prefix in a file name (``resnet18-f37072fd.pth``)."""
    match = re.search(r"-([a-f0-9]{6,})\.[a-z]+$", url)
    return match.group(1) if match else None


#: Entry sources by key (an encoder family); read lazily, so a source may import its library.
_sources: dict[str, Callable[[], Iterable[WeightsEntry]]] = {}
_added: dict[str, WeightsEntry] = {}
_table: dict[str, WeightsEntry] | None = None
_lock = threading.Lock()


def add_weights_source(key: str, source: Callable[[], Iterable[WeightsEntry]]) -> None:
    """Add (or replace) a source of entries: an encoder's declared weights."""
    global _table
    with _lock:
        _sources[key] = source
        _table = None


def _all() -> dict[str, WeightsEntry]:
    global _table
    with _lock:
        if _table is None:
            table = {e.name: e for source in _sources.values() for e in source()}
            _table = table | _added
        return _table


def register_weights(entry: WeightsEntry) -> None:
    """Add (or replace) an entry for this process: company-internal weights, tests."""
    global _table
    with _lock:
        _added[entry.name] = entry
        _table = None


def known_weights() -> list[WeightsEntry]:
    """Every registered entry, by name."""
    return sorted(_all().values(), key=lambda entry: entry.name)


def find_entry(name: str) -> WeightsEntry | None:
    return _all().get(name)


def get_entry(name: str) -> WeightsEntry:
    entry = find_entry(name)
    if entry is None:
        raise NotFoundError(
            f"no weights named {name!r}; `recsys weights list` shows the known names"
        )
    return entry
