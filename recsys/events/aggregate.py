"""Co-watch counts from watch events, per batch of users, and relatedness from the counts.

The aggregation is a sum over users: every count below is the sum of what each user
contributes, and a user's contribution depends on that user's events only. So the work splits
into **batches of whole users** (:func:`count_batch`, a pure function of numpy arrays: the map
step a Ray engine runs per batch) whose :class:`Counts` add up (:func:`merge_counts`: the
reduce). Adding a new event file recounts only the users it touches (their old contribution
out, the new one in), which is why an incremental add equals a one-shot count of the
concatenated files, sessions spanning two files and per-user caps included.

What a user contributes, in order:

1. the events in the time range (``before`` exclusive, ``since`` inclusive) watched at least
   ``min_watch_s`` (events without a watch time count);
2. at most ``user_cap`` of them: the latest (timestamps compare at one-second resolution, ties
   by video key), so a bot or a shared account weighs no more than a heavy viewer;
3. **session** co-watch: the events are cut into sessions where the user was inactive for more
   than ``session_gap_s`` (events with a ``session_id`` form the session of that id); each
   session is a *basket*: c_i = baskets containing video i, c_ij = baskets containing i and j,
   N = baskets (a session over :data:`MAX_BASKET` events is cut into pieces that long);
   **window** co-watch: two videos watched by the user within ``window_s`` of each other are
   co-watched; each user is a basket: c_i = users who watched i, c_ij = users who watched i and
   j within the window, N = users.

Relatedness (:func:`relatedness_sql`, DuckDB SQL over the summed counts): pairs with
c_ij >= ``min_support``, weighted c_ij / (c_i c_j) ** alpha or PMI log(c_ij N / (c_i c_j)) (kept
where positive), then the ``top_n`` strongest partners of every video (ties: more co-watches,
then the partner's external id); a pair is kept when it is in the list of either end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from recsys.choices import Cowatch, Normalise
from recsys.events.options import EventOptions

#: Pairs generated at once inside a batch (bounds the memory of a batch with long sessions).
PAIR_CHUNK = 8_000_000
#: Total counters of a batch; each is a sum over its users.
TOTALS = (
    "baskets",
    "users",
    "events",
    "capped_users",
    "capped_events",
    "short_events",
    "long_baskets",
)
#: The most events one basket pairs up (a session of a million views, with no user cap, would
#: otherwise ask for 5e11 pairs): longer sessions are cut into pieces of this many events, and
#: in window mode an event pairs with at most this many later events (``long_baskets`` counts
#: the sessions cut / the events whose window was cut).
MAX_BASKET = 1000


def epoch_us(moment: datetime) -> int:
    """Microseconds since the epoch of ``moment`` (a naive datetime is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass
class Counts:
    """Summed co-watch counts: per video (c_i and events counted), per pair (a < b), totals."""

    video: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    video_baskets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    video_events: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    pair_a: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    pair_b: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    pair_n: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOTALS, 0))

    def negated(self) -> Counts:
        return Counts(
            self.video,
            -self.video_baskets,
            -self.video_events,
            self.pair_a,
            self.pair_b,
            -self.pair_n,
            {k: -v for k, v in self.totals.items()},
        )

    def pair_dict(self) -> dict[tuple[int, int], int]:
        """{(a, b): c_ij} (for tests and small inspections)."""
        return {
            (int(a), int(b)): int(n)
            for a, b, n in zip(self.pair_a, self.pair_b, self.pair_n, strict=True)
        }

    def video_dict(self) -> dict[int, int]:
        """{video key: c_i}."""
        return {int(v): int(n) for v, n in zip(self.video, self.video_baskets, strict=True)}


def _bits(values: np.ndarray) -> int:
    return int(values.max()).bit_length() if values.size else 0


def sort_rows(columns: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The rows of non-negative int64 ``columns`` in lexicographic order (first column first).

    When the columns fit in 63 bits together they are packed into one int64 and sorted by
    value (numpy's vectorised sort, several times faster than an argsort); otherwise a lexsort.
    """
    if len(columns) == 1:
        return [np.sort(columns[0])]
    n = columns[0].size
    widths = [_bits(c) for c in columns]
    if sum(widths) <= 63:
        key = np.zeros(n, np.int64)
        for column, width in zip(columns, widths, strict=True):
            key <<= width
            key |= column
        key.sort()
        out: list[np.ndarray] = []
        for width in reversed(widths):
            out.append(key & ((1 << width) - 1))
            key >>= width
        return out[::-1]
    order = np.lexsort(tuple(columns[::-1]))
    return [c[order] for c in columns]


def _run_starts(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Indices where a run of equal rows starts (rows sorted)."""
    n = columns[0].size
    change = np.zeros(n, bool)
    if n:
        change[0] = True
        for column in columns:
            change[1:] |= column[1:] != column[:-1]
    return np.flatnonzero(change)


def unique_rows(
    columns: Sequence[np.ndarray], weights: np.ndarray | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Distinct rows (sorted) and how many times each occurs (or the sum of ``weights``)."""
    if weights is None:
        ordered = sort_rows(columns)
        starts = _run_starts(ordered)
        counts = np.diff(np.append(starts, ordered[0].size)) if ordered[0].size else starts
        return [c[starts] for c in ordered], counts.astype(np.int64)
    # Weighted: the weights must follow their rows. Non-negative weights that fit beside the
    # packed key go into its low bits, so one value sort (several times faster than an argsort)
    # orders both; otherwise an argsort of the packed key, or a lexsort.
    widths = [_bits(c) for c in columns]
    weights = np.asarray(weights, np.int64)
    if columns[0].size and sum(widths) + _bits(weights) <= 63 and int(weights.min()) >= 0:
        *keys, low = sort_rows([*columns, weights])
        starts = _run_starts(keys)
        sums = np.add.reduceat(low, starts) if starts.size else np.zeros(0, np.int64)
        return [c[starts] for c in keys], sums.astype(np.int64)
    if not columns[0].size:
        order = np.zeros(0, np.int64)
    elif sum(widths) <= 63:
        key = np.zeros(columns[0].size, np.int64)
        for column, width in zip(columns, widths, strict=True):
            key <<= width
            key |= column
        order = np.argsort(key)
    else:
        order = np.lexsort(tuple(columns[::-1]))
    ordered = [c[order] for c in columns]
    starts = _run_starts(ordered)
    sums = np.add.reduceat(weights[order], starts) if starts.size else np.zeros(0, np.int64)
    return [c[starts] for c in ordered], sums.astype(np.int64)


def value_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct non-negative integers (sorted) and how often each occurs: a ``bincount`` when
    they are dense (one pass instead of a sort), else :func:`unique_rows`."""
    if values.size and int(values.max()) < 4 * values.size + 1024:
        counts = np.bincount(values)
        present = np.flatnonzero(counts)
        return present.astype(np.int64), counts[present].astype(np.int64)
    (distinct,), counts = unique_rows([values])
    return distinct, counts


def _segments(starts: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, length) of the segments beginning at ``starts`` within ``total`` rows."""
    lengths = np.diff(np.append(starts, total))
    return starts, lengths


def _pairs_within(
    basket_starts: np.ndarray, lengths: np.ndarray, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every (items[i], items[j]), i < j, inside each basket (rows ``start .. start+len``)."""
    multi = lengths > 1
    starts, lengths = basket_starts[multi], lengths[multi]
    if not starts.size:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # Row r of a basket pairs with the rows after it: (end - r - 1) partners.
    rows = np.repeat(starts, lengths) + _ramp(lengths)
    after = np.repeat(starts + lengths, lengths) - rows - 1
    left = np.repeat(rows, after)
    right = left + 1 + _ramp(after)
    return items[left], items[right]


def _ramp(lengths: np.ndarray) -> np.ndarray:
    """0, 1, ..., len-1 for each length, concatenated."""
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, np.int64)
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total, dtype=np.int64) - offsets


def _chunks(lengths: np.ndarray, pairs_each: np.ndarray, limit: int) -> Iterable[slice]:
    """Slices of consecutive baskets whose pairs add up to about ``limit`` at most."""
    if not lengths.size:
        return
    cumulative = np.cumsum(pairs_each)
    start = 0
    while start < lengths.size:
        base = cumulative[start - 1] if start else 0
        stop = int(np.searchsorted(cumulative, base + limit, side="right"))
        stop = max(stop, start + 1)
        yield slice(start, stop)
        start = stop


def _count_pairs(
    baskets: np.ndarray, items: np.ndarray, video_span: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """c_ij over baskets: ``baskets``/``items`` sorted, one row per (basket, video)."""
    starts = _run_starts([baskets])
    starts, lengths = _segments(starts, baskets.size)
    pairs_each = lengths * (lengths - 1) // 2
    keys: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    for part in _chunks(lengths, pairs_each, PAIR_CHUNK):
        a, b = _pairs_within(starts[part], lengths[part], items)
        if not a.size:
            continue
        (key,), n = unique_rows([a * video_span + b])
        keys.append(key)
        counts.append(n)
    if not keys:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    key = np.concatenate(keys)
    n = np.concatenate(counts)
    if len(keys) > 1:
        (key,), n = unique_rows([key], n)
    return key // video_span, key % video_span, n


def count_batch(
    events: dict[str, np.ndarray],
    options: EventOptions,
    *,
    before: datetime | None = None,
    since: datetime | None = None,
) -> Counts:
    """The co-watch counts of one batch of **whole users** (see the module docstring).

    ``events``: ``uid``, ``vid`` (non-negative int64 keys), ``t`` (int64 microseconds since the
    epoch), optional ``watch`` (float seconds, NaN unknown) and ``sid`` (int64 session code,
    negative: none). Rows need no order. Duplicates should have been removed (the store does).
    """
    uid = np.asarray(events["uid"], np.int64)
    vid = np.asarray(events["vid"], np.int64)
    t = np.asarray(events["t"], np.int64)
    watch = events.get("watch")
    sid = events.get("sid")
    keep = np.ones(uid.size, bool)
    if before is not None:
        keep &= t < epoch_us(before)
    if since is not None:
        keep &= t >= epoch_us(since)
    counts = Counts()
    if watch is not None and options.min_watch_s > 0:
        watch = np.asarray(watch, np.float64)
        short = keep & (watch < options.min_watch_s)  # NaN (unknown) compares False: kept
        counts.totals["short_events"] = int(short.sum())
        keep &= ~short
    uid, vid, t = uid[keep], vid[keep], t[keep]
    sid = np.asarray(sid, np.int64)[keep] if sid is not None else None
    if sid is not None and not (sid >= 0).any():
        sid = None
    if not uid.size:
        return counts
    seconds = t // 1_000_000
    base = int(seconds.min())
    seconds -= base
    # A user's events in time order (ties by video key): the cap and the sessions read it.
    if sid is None:
        uid, seconds, vid = sort_rows([uid, seconds, vid])
    else:
        order = np.lexsort((vid, seconds, uid))
        uid, seconds, vid, sid = uid[order], seconds[order], vid[order], sid[order]
    user_starts = _run_starts([uid])
    user_starts, user_sizes = _segments(user_starts, uid.size)
    counts.totals["users"] = int(user_starts.size)
    if options.user_cap and (user_sizes > options.user_cap).any():
        over = user_sizes > options.user_cap
        counts.totals["capped_users"] = int(over.sum())
        counts.totals["capped_events"] = int((user_sizes[over] - options.user_cap).sum())
        from_end = np.repeat(user_starts + user_sizes, user_sizes) - np.arange(uid.size) - 1
        kept = from_end < options.user_cap
        uid, seconds, vid = uid[kept], seconds[kept], vid[kept]
        sid = sid[kept] if sid is not None else None
    counts.totals["events"] = int(uid.size)
    counts.video, counts.video_events = value_counts(vid)
    span = int(vid.max()) + 1
    if options.cowatch == Cowatch.SESSION:
        basket = _sessions(uid, seconds, sid, options.session_gap_s)
        basket, counts.totals["long_baskets"] = _cut_long(basket)
        basket, items = unique_rows([basket, vid])[0]  # a video once per basket
        counts.totals["baskets"] = int(_run_starts([basket]).size)
        counts.pair_a, counts.pair_b, counts.pair_n = _count_pairs(basket, items, span)
    else:
        counts.totals["baskets"] = counts.totals["users"]
        _, items = unique_rows([uid, vid])[0]  # a video once per user
        counts.pair_a, counts.pair_b, counts.pair_n, cut = _window_pairs(
            uid, seconds, vid, options.window_s, span
        )
        counts.totals["long_baskets"] = cut
    video_again, counts.video_baskets = value_counts(items)
    assert np.array_equal(video_again, counts.video)  # both: the batch's distinct videos
    return counts


def _sessions(
    uid: np.ndarray, seconds: np.ndarray, sid: np.ndarray | None, gap_s: float
) -> np.ndarray:
    """A basket number per event (events in user, time order)."""
    start = np.ones(uid.size, bool)
    start[1:] = (uid[1:] != uid[:-1]) | (seconds[1:] - seconds[:-1] > gap_s)
    if sid is None:
        return np.cumsum(start) - 1
    # Gap sessions among the events without a session id (a tagged event in between does not
    # join two of them); (user, session id) for the others.
    plain = np.flatnonzero(sid < 0)
    basket = np.empty(uid.size, np.int64)
    gap_start = np.ones(plain.size, bool)
    gap_start[1:] = (uid[plain][1:] != uid[plain][:-1]) | (
        seconds[plain][1:] - seconds[plain][:-1] > gap_s
    )
    basket[plain] = np.cumsum(gap_start) - 1
    offset = int(gap_start.sum())
    tagged = np.flatnonzero(sid >= 0)
    order = np.lexsort((sid[tagged], uid[tagged]))
    in_order = [uid[tagged][order], sid[tagged][order]]
    new_group = np.zeros(tagged.size, bool)
    new_group[_run_starts(in_order)] = True
    number = np.empty(tagged.size, np.int64)
    number[order] = np.cumsum(new_group) - 1
    basket[tagged] = offset + number
    return basket


def _cut_long(basket: np.ndarray) -> tuple[np.ndarray, int]:
    """Baskets over :data:`MAX_BASKET` events cut into consecutive pieces; (new basket numbers,
    how many baskets were cut)."""
    if not basket.size:
        return basket, 0
    sizes = np.bincount(basket)
    long = int((sizes > MAX_BASKET).sum())
    if not long:
        return basket, 0
    order = np.argsort(basket, kind="stable")  # events keep their time order inside a basket
    starts = np.cumsum(sizes) - sizes
    rank = np.empty(basket.size, np.int64)
    rank[order] = np.arange(basket.size) - starts[basket[order]]
    pieces = (sizes + MAX_BASKET - 1) // MAX_BASKET
    first_piece = np.cumsum(pieces) - pieces
    return first_piece[basket] + rank // MAX_BASKET, long


def _window_pairs(
    uid: np.ndarray, seconds: np.ndarray, vid: np.ndarray, window_s: float, span: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """c_ij = users who watched i and j within ``window_s`` (events in user, time order), an
    event pairing with at most :data:`MAX_BASKET` later events; also how many events had more
    within their window."""
    users: list[np.ndarray] = []
    keys: list[np.ndarray] = []
    active = np.arange(uid.size - 1)
    offset = 1
    cut = 0
    while active.size:
        partner = active + offset
        inside = partner < uid.size
        active, partner = active[inside], partner[inside]
        close = (uid[partner] == uid[active]) & (seconds[partner] - seconds[active] <= window_s)
        active, partner = active[close], partner[close]
        if offset > MAX_BASKET:
            cut = int(active.size)
            break
        differ = vid[active] != vid[partner]
        left, right = vid[active[differ]], vid[partner[differ]]
        if left.size:
            users.append(uid[active[differ]])
            keys.append(np.minimum(left, right) * span + np.maximum(left, right))
        offset += 1
    if not keys:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, cut
    (_, key), _ = unique_rows([np.concatenate(users), np.concatenate(keys)])
    (key,), n = unique_rows([key])
    pair_a, pair_b = np.divmod(key, span)
    return pair_a, pair_b, n, cut


def merge_counts(parts: Iterable[Counts]) -> Counts:
    """The sum of batch counts (the reduce step; order does not matter)."""
    parts = list(parts)
    merged = Counts()
    if not parts:
        return merged
    if len(parts) == 1 and (parts[0].pair_n > 0).all() and (parts[0].video_baskets > 0).all():
        return parts[0]  # one batch's counts: already distinct, sorted and positive
    for name in TOTALS:
        merged.totals[name] = sum(p.totals.get(name, 0) for p in parts)
    video = np.concatenate([p.video for p in parts])
    if video.size:
        (merged.video,), merged.video_baskets = unique_rows(
            [video], np.concatenate([p.video_baskets for p in parts])
        )
        _, merged.video_events = unique_rows(
            [video], np.concatenate([p.video_events for p in parts])
        )
    merged.pair_a, merged.pair_b, merged.pair_n = _merge_pairs(parts)
    nonzero = merged.pair_n != 0
    merged.pair_a, merged.pair_b = merged.pair_a[nonzero], merged.pair_b[nonzero]
    merged.pair_n = merged.pair_n[nonzero]
    live = (merged.video_baskets != 0) | (merged.video_events != 0)
    merged.video = merged.video[live]
    merged.video_baskets, merged.video_events = (
        merged.video_baskets[live],
        merged.video_events[live],
    )
    return merged


def _merge_pairs(parts: Sequence[Counts]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The summed pair counts of ``parts``. Each part is sorted by (a, b), so one key per pair
    and a stable sort (a merge of the sorted runs) order them in a few passes."""
    sizes = [p.pair_a.size for p in parts]
    if not sum(sizes):
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    span = 1 + max(int(max(p.pair_b.max(), p.pair_a.max())) for p in parts if p.pair_a.size)
    if span > 3_037_000_499:  # span**2 would overflow int64: rows instead of keys
        (a, b), n = unique_rows(
            [np.concatenate([p.pair_a for p in parts]), np.concatenate([p.pair_b for p in parts])],
            np.concatenate([p.pair_n for p in parts]),
        )
        return a, b, n
    a = np.concatenate([p.pair_a for p in parts])
    b = np.concatenate([p.pair_b for p in parts])
    order = np.argsort(a * span + b, kind="stable")
    starts = _run_starts([a[order], b[order]])
    first = order[starts]
    n = np.concatenate([p.pair_n for p in parts])[order]
    return a[first], b[first], np.add.reduceat(n, starts).astype(np.int64)


def weight_sql(options: EventOptions, baskets: int) -> str:
    """The SQL weight of a pair from ``p.n`` (c_ij), ``ca.n``/``cb.n`` (c_i, c_j)."""
    if options.normalise == Normalise.PMI:
        return f"ln(p.n * {max(baskets, 1)}::DOUBLE / (ca.n::DOUBLE * cb.n))"
    return f"p.n / pow(ca.n::DOUBLE * cb.n, {float(options.alpha)!r})"


def relatedness_sql(
    options: EventOptions,
    *,
    pairs: str,
    videos: str,
    names: str,
    baskets: int,
    known: str | None = None,
) -> str:
    """SQL of the related pairs: ``video_a, video_b`` (external ids, a < b), ``weight``,
    ``cowatch`` (c_ij).

    Tables: ``pairs(a, b, n)`` (c_ij), ``videos(vid, n)`` (c_i), ``names(vid, video_id)``;
    ``known(vid)`` restricts both ends (and so the top-N lists) to videos in the catalog.
    """
    restrict = f" AND p.a IN (SELECT vid FROM {known}) AND p.b IN (SELECT vid FROM {known})"
    return f"""
        WITH weighted AS (
            SELECT p.a, p.b, p.n, {weight_sql(options, baskets)} AS w
            FROM {pairs} p
            JOIN {videos} ca ON ca.vid = p.a
            JOIN {videos} cb ON cb.vid = p.b
            WHERE p.n >= {int(options.min_support)}{restrict if known else ""}
        ),
        named AS (
            SELECT w.*, na.video_id AS id_a, nb.video_id AS id_b
            FROM weighted w
            JOIN {names} na ON na.vid = w.a
            JOIN {names} nb ON nb.vid = w.b
            WHERE w.w > 0
        ),
        directed AS (
            SELECT id_a AS owner, id_b AS partner, id_a, id_b, w, n FROM named
            UNION ALL
            SELECT id_b AS owner, id_a AS partner, id_a, id_b, w, n FROM named
        ),
        ranked AS (
            SELECT id_a, id_b, w, n FROM directed
            QUALIFY row_number() OVER (
                PARTITION BY owner ORDER BY w DESC, n DESC, partner
            ) <= {int(options.top_n)}
        )
        SELECT DISTINCT
            CASE WHEN id_a < id_b THEN id_a ELSE id_b END AS video_a,
            CASE WHEN id_a < id_b THEN id_b ELSE id_a END AS video_b,
            w AS weight,
            n AS cowatch
        FROM ranked
    """
