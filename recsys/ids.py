"""The two names of a video, kept apart by name and by type, and the rule for external ids.

* ``video_id`` (``str``): the external id users, manifests and URLs use.
* ``video_key`` (:data:`VideoKey`, ``int``): the internal int64 key, ``videos.id`` in the
  database, the id every FAISS index and embedding shard stores.

An external id may hold any text a manifest can (spaces, ``%``, ``?``, ``#``, unicode) and ``/``
(directory ingest names a file by its relative path, ``sub/clip``): the API takes it as the
URL-encoded tail of the path (``/videos/sub/clip`` or ``/videos/sub%2Fclip``). What a URL can
never carry is refused by :func:`unroutable_reason`, the one rule that ingest (refusing manifest
ids) and the API (validating path, query and body ids) share.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NewType
from urllib.parse import quote

import numpy as np

VideoKey = NewType("VideoKey", int)

DENSE_SPAN = 4
"""A table of keys is kept when the largest key is under this many times their count (plus a
little): autoincrement keys with gaps from deletions, never a sparse hash-like key space."""


def dense_positions(sorted_keys: np.ndarray) -> np.ndarray | None:
    """Key -> position in ``sorted_keys`` (-1: absent) as one array indexed by the key, when
    the keys are compact enough (:data:`DENSE_SPAN`); None otherwise. One gather per key
    instead of a binary search: at a million keys a binary search misses the cache about
    twenty times per key, which made mapping a hundred search results cost more than the
    search."""
    n = int(sorted_keys.shape[0])
    if not n or int(sorted_keys[0]) < 0 or int(sorted_keys[-1]) >= DENSE_SPAN * n + 1024:
        return None
    kind = np.int32 if n < np.iinfo(np.int32).max else np.int64
    table = np.full(int(sorted_keys[-1]) + 1, -1, dtype=kind)
    table[sorted_keys] = np.arange(n, dtype=kind)
    return table


def positions_in(sorted_keys: np.ndarray, table: np.ndarray | None, keys: np.ndarray) -> np.ndarray:
    """Where each of ``keys`` sits in ``sorted_keys`` (-1: absent), through its
    :func:`dense_positions` ``table`` when there is one, else by binary search."""
    if table is not None:
        if not keys.size or (int(keys.min()) >= 0 and int(keys.max()) < table.shape[0]):
            return table[keys]  # the usual call: keys that a search over these keys returned
        inside = (keys >= 0) & (keys < table.shape[0])
        return np.where(inside, table[np.where(inside, keys, 0)], -1)
    n = int(sorted_keys.shape[0])
    if n == 0:
        return np.full(keys.shape, -1, dtype=np.int64)
    found = sorted_keys.searchsorted(keys)  # in [0, n]: only the top needs a bound
    np.minimum(found, n - 1, out=found)  # ndarray.clip costs more
    return np.where(sorted_keys[found] == keys, found, -1)


MAX_VIDEO_ID_LENGTH = 255
"""Characters; the width of ``videos.video_id``."""

# What ``quote(..., safe="/")`` leaves alone: ASCII letters, digits, ``_.-~`` and ``/``.
_NOTHING_TO_QUOTE = re.compile(r"[A-Za-z0-9_.\-~/]*").fullmatch
_CONTROL = r"\x00-\x1f\x7f-\x9f"  # Unicode category Cc: C0 controls, DEL and C1 controls
_SEGMENT = (
    rf"(?:[^./{_CONTROL}][^/{_CONTROL}]*"  # starts with anything but a dot
    rf"|\.[^./{_CONTROL}][^/{_CONTROL}]*"  # one dot, then not a dot: ".x"
    rf"|\.\.[^/{_CONTROL}]+)"  # two dots and more: "...", "..x"
)
ROUTABLE_VIDEO_ID_PATTERN = rf"^{_SEGMENT}(?:/{_SEGMENT})*$"
"""The characters and ``/``-segments of a routable id, as a regular expression (no look-arounds,
so JSON-schema tools can generate from it); the length limit and lone surrogates, which no HTTP
path can carry, are checked apart. :func:`unroutable_reason` is the rule; this is its schema."""

_ROUTABLE = re.compile(ROUTABLE_VIDEO_ID_PATTERN)
_SURROGATE = re.compile("[\ud800-\udfff]")


def unroutable_reason(video_id: str) -> str | None:
    """Why the API could never serve ``video_id`` (None: it can, URL-encoded).

    Refused: the empty id, ids over :data:`MAX_VIDEO_ID_LENGTH` characters, control characters
    (which no URL, log line or database column should hold), lone surrogates (not text), and
    ``/``-separated segments that URLs collapse: empty ones (a leading, trailing or doubled
    ``/``) and ``.`` or ``..`` (clients and proxies normalise ``a/./b`` to ``a/b``, so the
    request would name another video). The reason completes "video id ... ".
    """
    if not isinstance(video_id, str):
        return f"is a {type(video_id).__name__}, not text"
    if not video_id:
        return "is empty"
    if len(video_id) > MAX_VIDEO_ID_LENGTH:
        return f"is {len(video_id)} characters long; at most {MAX_VIDEO_ID_LENGTH} are allowed"
    surrogate = _SURROGATE.search(video_id)
    if surrogate is None and _ROUTABLE.fullmatch(video_id):
        return None
    if surrogate is not None:
        return (
            f"contains a lone surrogate (U+{ord(surrogate.group()):04X}) at position "
            f"{surrogate.start()}; it is not valid Unicode text"
        )
    for position, char in enumerate(video_id):
        if unicodedata.category(char) == "Cc":
            return (
                f"contains the control character U+{ord(char):04X} at position {position}; "
                "ids must be printable"
            )
    segments = video_id.split("/")
    if "" in segments:
        return "has an empty path segment (a leading, trailing or doubled '/')"
    dots = next(segment for segment in segments if segment in (".", ".."))
    return f"has a {dots!r} path segment, which URLs collapse (a client would ask for another id)"


def video_id_path(video_id: str) -> str:
    """``video_id`` as the tail of a URL path: every character but the unreserved ones and
    ``/`` percent-encoded (``sub/a b?`` -> ``sub/a%20b%3F``); routes accept it literally.
    Ids with nothing to encode (most of them) are returned as they are, without a ``quote`` call
    per result of every page."""
    if _NOTHING_TO_QUOTE(video_id):
        return video_id
    return quote(video_id, safe="/")
