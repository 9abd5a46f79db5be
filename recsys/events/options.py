"""What an events ingest is asked to do: the co-watch definition, the normalisation, the columns.

:class:`EventOptions` holds every default (the CLI reads them from here). Its fields split in
two groups:

* the **count options** (``cowatch``, ``session_gap_s`` or ``window_s``, ``min_watch_s``,
  ``user_cap``) decide the counts c_i, c_ij kept in the aggregate store; changing one of them
  recounts the whole history from the stored events (reported as ``recounted``);
* the **graph options** (``normalise``, ``alpha``, ``min_support``, ``top_n``) turn counts into
  the related pairs; changing them only recomputes the pairs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from recsys.choices import Cowatch, Engine, Normalise, parse_choice
from recsys.errors import UserError

#: The columns an event file provides (after ``columns`` mapping); the first three are required.
REQUIRED_COLUMNS = ("user_id", "video_id", "timestamp")
OPTIONAL_COLUMNS = ("watch_seconds", "session_id")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$")


class EventOptionError(UserError, ValueError):
    """An events option the aggregation cannot use; the message names it and the fix."""


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """Seconds from ``90``, ``90s``, ``30m``/``30min``, ``2h`` or ``1d`` (a plain number is
    seconds)."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.match(text.lower())
        if not match or match.group(2) not in {"", *_UNITS}:
            raise EventOptionError(
                f"{what} {text!r} is not a duration: give seconds or a number with s, m, h or d "
                "(e.g. 30m, 24h)"
            )
        seconds = float(match.group(1)) * _UNITS.get(match.group(2) or "s", 1.0)
    if not math.isfinite(seconds) or seconds <= 0:
        raise EventOptionError(f"{what} must be a positive duration, got {text!r}")
    return seconds


def parse_columns(pairs: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    """``["user_id=uid", "timestamp=ts"]`` (or a mapping) as {our column: the file's column}."""
    items = pairs.items() if isinstance(pairs, Mapping) else (_split(p) for p in pairs)
    mapping: dict[str, str] = {}
    for ours, theirs in items:
        ours, theirs = ours.strip(), theirs.strip()
        if ours not in COLUMNS:
            raise EventOptionError(
                f"unknown event column {ours!r} in the column mapping: map one of "
                f"{', '.join(COLUMNS)} (e.g. --column user_id=uid)"
            )
        if not theirs:
            raise EventOptionError(f"column mapping for {ours!r} names no file column")
        if ours in mapping and mapping[ours] != theirs:
            raise EventOptionError(
                f"column {ours!r} is mapped twice ({mapping[ours]!r}, {theirs!r})"
            )
        mapping[ours] = theirs
    taken: dict[str, str] = {}
    for ours, theirs in mapping.items():
        if theirs in taken:
            raise EventOptionError(
                f"file column {theirs!r} is mapped to both {taken[theirs]!r} and {ours!r}"
            )
        taken[theirs] = ours
    return mapping


def _split(pair: str) -> tuple[str, str]:
    ours, sep, theirs = pair.partition("=")
    if not sep:
        raise EventOptionError(
            f"column mapping {pair!r} is not OURS=THEIRS: write e.g. user_id=uid "
            f"(ours: {', '.join(COLUMNS)})"
        )
    return ours, theirs


@dataclass
class EventOptions:
    """Knobs of :func:`recsys.events.ingest_events` (the CLI maps its flags one to one).

    Co-watch: ``session`` puts a user's events into sessions split where the user was inactive
    for more than ``session_gap_s`` (events that carry a ``session_id`` are grouped by it
    instead); ``window`` pairs two videos a user watched within ``window_s`` of each other.
    Relatedness: ``power`` is c_ij / (c_i * c_j) ** alpha; ``pmi`` is log(c_ij * N / (c_i * c_j))
    with N the number of baskets, kept only where positive (weights must be positive).
    """

    source: str = "events"  # the related_pairs source and the aggregate store's name
    cowatch: Cowatch = Cowatch.SESSION
    session_gap_s: float = 30 * 60.0
    window_s: float = 24 * 3600.0
    min_watch_s: float = 0.0  # events watched less are not counted (events without it are)
    user_cap: int = 1000  # events counted per user (their latest); 0: no cap
    normalise: Normalise = Normalise.POWER
    alpha: float = 0.5
    min_support: int = 2  # pairs co-watched fewer times are dropped
    top_n: int = 50  # partners kept per video
    columns: dict[str, str] = field(default_factory=dict)  # ours -> the file's column
    # Events counted per batch of whole users: bounds the memory (~0.3 GB per million events).
    batch_events: int = 10_000_000
    # Where the counts are computed: in this process (DuckDB + numpy) or on Ray Data (same
    # results; for event sets one machine cannot hold). Not part of the count key.
    engine: Engine = Engine.LOCAL

    def __post_init__(self) -> None:
        self.engine = parse_choice(Engine, self.engine, "engine")
        self.cowatch = parse_choice(Cowatch, self.cowatch, "cowatch")
        self.normalise = parse_choice(Normalise, self.normalise, "normalise")
        self.columns = parse_columns(self.columns)
        self.session_gap_s = parse_duration(self.session_gap_s, "session gap")
        self.window_s = parse_duration(self.window_s, "window")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", self.source):
            raise EventOptionError(
                f"events source {self.source!r} must be 1-64 letters, digits, '_', '.' or '-' "
                "(it names the related_pairs source and the store file)"
            )
        checks: list[tuple[bool, str]] = [
            (math.isfinite(self.min_watch_s) and self.min_watch_s >= 0, "min watch seconds >= 0"),
            (self.user_cap >= 0, "user cap >= 0 (0: no cap)"),
            (math.isfinite(self.alpha) and self.alpha >= 0, "alpha >= 0"),
            (self.min_support >= 1, "min support >= 1"),
            (self.top_n >= 1, "top-n >= 1"),
            (self.batch_events >= 1, "batch events >= 1"),
        ]
        for ok, expected in checks:
            if not ok:
                raise EventOptionError(f"invalid events option: expected {expected}")

    def column(self, ours: str) -> str:
        """The file's name of our column ``ours``."""
        return self.columns.get(ours, ours)

    def count_key(self) -> dict[str, Any]:
        """The options the stored counts depend on (a change recounts the history)."""
        key: dict[str, Any] = {
            "cowatch": str(self.cowatch),
            "min_watch_s": self.min_watch_s,
            "user_cap": self.user_cap,
        }
        if self.cowatch == Cowatch.SESSION:
            key["session_gap_s"] = self.session_gap_s
        else:
            key["window_s"] = self.window_s
        return key

    def graph_key(self) -> dict[str, Any]:
        """The options that turn counts into related pairs."""
        return {
            "normalise": str(self.normalise),
            "alpha": self.alpha,
            "min_support": self.min_support,
            "top_n": self.top_n,
        }

    def as_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["cowatch"] = str(self.cowatch)
        payload["normalise"] = str(self.normalise)
        payload["engine"] = str(self.engine)
        return payload
