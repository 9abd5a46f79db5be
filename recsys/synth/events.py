"""Synthetic watch logs with the structure real ones have, for tests, benchmarks and the demo.

``generate_events`` writes ``events.parquet`` (``user_id, video_id, timestamp, watch_seconds``)
for a corpus's videos, seeded:

* **topics**: each user has a topic preference (a sparse Dirichlet draw) that **drifts**
  linearly to a second one over the period; a session mostly stays on one topic drawn from
  the preference at its start, so co-watch follows the corpus's topics (and its content);
* **series**: when the videos' series are given (:mod:`recsys.synth.corpus`: channels,
  creators, sub-genres inside a topic), a session also has a series: the user's favourite
  series of the session's topic with probability ``series_loyalty``, else another series of
  that topic; ``series_focus`` of the session's on-topic events come from that series (people
  binge a creator), so co-watch has structure beyond the topic. The draws use their own
  seeded stream: without series the log is the same as before;
* **popularity**: video weights follow a Zipf law over a random popularity rank;
* **sessions**: users are active at lognormal rates; a session has a geometric number of
  events a few minutes apart; sessions start at random times, so gaps between them are long;
* **releases**: a share of the catalog exists at the start, the rest is released over the
  period and never watched before its release, so at any cut-off some videos are cold;
* **bots**: a few users watch random videos every few seconds, thousands of times;
* **watch time**: most views last tens of seconds, some are skips of a few seconds.

:func:`event_arrays` is the same generator as numpy arrays (integer ids), fast enough for the
benchmark's ten million events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

#: A session's series is the user's favourite one of its topic this often, and this share of
#: its on-topic events come from that series (module docstring).
SERIES_LOYALTY = 0.6
SERIES_FOCUS = 0.8

#: The first moment of the synthetic period (UTC).
START = datetime(2024, 1, 1, tzinfo=UTC)
_START_US = int(START.timestamp()) * 1_000_000


@dataclass
class EventArrays:
    """Events as arrays: ``user`` / ``video`` indices, ``t`` microseconds since the epoch."""

    user: np.ndarray
    video: np.ndarray
    t: np.ndarray
    watch: np.ndarray
    release_us: np.ndarray  # per video: when it appears
    bots: np.ndarray  # user indices of the bots
    users: int


@dataclass
class EventsInfo:
    """What ``generate_events`` wrote."""

    path: Path
    events: int
    users: int
    videos: int
    start: datetime
    end: datetime
    bots: list[str] = field(default_factory=list)
    release: dict[str, datetime] = field(default_factory=dict)  # video_id -> release time

    def cold_at(self, cutoff: datetime) -> list[str]:
        """Videos released at or after ``cutoff`` (no events before it)."""
        return sorted(v for v, t in self.release.items() if t >= cutoff)


def event_arrays(
    video_topics: Sequence[int] | np.ndarray,
    *,
    users: int = 200,
    days: float = 30.0,
    sessions_per_user: float = 8.0,
    session_length: float = 5.0,
    zipf: float = 1.0,
    released_at_start: float = 0.6,
    bots: int = 2,
    bot_events: int = 2000,
    seed: int = 0,
    video_series: Sequence[int] | np.ndarray | None = None,
    series_loyalty: float = SERIES_LOYALTY,
    series_focus: float = SERIES_FOCUS,
) -> EventArrays:
    """A seeded synthetic log over ``len(video_topics)`` videos (see the module docstring).

    About ``users * sessions_per_user * session_length`` events plus ``bots * bot_events``.
    ``video_series``: each video's series (ids unique across topics); None: topics only.
    """
    topics_of = np.asarray(video_topics, np.int64)
    videos = topics_of.size
    if videos < 1 or users < 1:
        raise ValueError("need at least one video and one user")
    topics = int(topics_of.max()) + 1
    rng = np.random.default_rng([seed, 15])
    span_us = int(days * 86_400 * 1_000_000)
    # Videos: popularity by a random rank (Zipf), release time (a share at the start).
    rank = rng.permutation(videos)
    popularity = 1.0 / (rank + 1.0) ** zipf
    late = rng.uniform(size=videos) >= released_at_start
    release = np.where(late, rng.uniform(0, 0.95, size=videos) * span_us, 0).astype(np.int64)
    release += _START_US
    # Users: activity, a topic preference that drifts from p0 to p1.
    activity = rng.lognormal(0.0, 0.8, size=users)
    activity /= activity.mean()
    p0 = rng.dirichlet(np.full(topics, 0.3), size=users)
    p1 = rng.dirichlet(np.full(topics, 0.3), size=users)
    per_user = rng.poisson(activity * sessions_per_user)
    session_user = np.repeat(np.arange(users), per_user)
    sessions = session_user.size
    start = rng.integers(0, max(1, span_us), size=sessions) + _START_US
    drift = (start - _START_US) / max(1, span_us)
    c0, c1 = np.cumsum(p0, axis=1), np.cumsum(p1, axis=1)
    session_topic = _draw_topics(session_user, drift, c0, c1, rng)
    other_topic = _draw_topics(session_user, drift, c0, c1, rng)  # a session's side topic
    length = rng.geometric(1.0 / max(1.0, session_length), size=sessions)
    # Events: a few minutes apart inside a session; mostly the session's topic.
    owner = np.repeat(np.arange(sessions), length)
    gaps = rng.exponential(180.0, size=owner.size) * 1_000_000 + 20_000_000
    first = np.cumsum(length) - length
    cumulative = np.cumsum(gaps)
    before_session = np.repeat(cumulative[first] - gaps[first], length)
    t = start[owner] + (cumulative - gaps - before_session).astype(np.int64)
    topic = np.where(rng.uniform(size=owner.size) < 0.85, session_topic[owner], other_topic[owner])
    video = _draw_released(topic, t, topics_of, release, popularity, rng)
    if video_series is not None:
        video = _series_sessions(
            video,
            topic,
            t,
            owner,
            session_user,
            session_topic,
            topics_of,
            np.asarray(video_series, np.int64),
            release,
            popularity,
            (series_loyalty, series_focus),
            np.random.default_rng([seed, 15, 1]),
        )
    user = session_user[owner]
    watch = np.where(
        rng.uniform(size=owner.size) < 0.15,
        rng.uniform(1, 8, size=owner.size),
        rng.uniform(20, 300, size=owner.size),
    )
    keep = video >= 0  # a topic with nothing released yet at that time: no event
    user, video, t, watch = user[keep], video[keep], t[keep], watch[keep]
    # Bots: random released videos every few seconds, over and over.
    bot_ids = np.arange(users, users + bots)
    if bots and bot_events:
        bot_user = np.repeat(bot_ids, bot_events)
        bot_start = rng.integers(0, max(1, span_us // 2), size=bots) + _START_US
        steps = np.tile(np.arange(bot_events), bots) * 5_000_000
        bot_t = np.repeat(bot_start, bot_events) + steps
        released = np.flatnonzero(release <= _START_US)
        if not released.size:
            released = np.arange(videos)
        bot_video = released[rng.integers(0, released.size, size=bot_user.size)]
        user = np.concatenate([user, bot_user])
        video = np.concatenate([video, bot_video])
        t = np.concatenate([t, bot_t])
        watch = np.concatenate([watch, rng.uniform(2, 6, size=bot_user.size)])
    return EventArrays(
        user=user,
        video=video,
        t=t,
        watch=np.round(watch, 1),
        release_us=release,
        bots=bot_ids,
        users=users + bots,
    )


def _series_sessions(
    video: np.ndarray,
    topic: np.ndarray,
    t: np.ndarray,
    owner: np.ndarray,
    session_user: np.ndarray,
    session_topic: np.ndarray,
    topics_of: np.ndarray,
    series_of: np.ndarray,
    release: np.ndarray,
    popularity: np.ndarray,
    shares: tuple[float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """``video`` with a session's series applied (module docstring): each session gets a
    series of its topic (the user's favourite one with probability ``shares[0]``), and
    ``shares[1]`` of its on-topic events are redrawn from that series (kept as drawn while the
    series has nothing released yet)."""
    if series_of.shape != topics_of.shape:
        raise ValueError("one series per video")
    loyalty, focus = shares
    topics = int(topics_of.max()) + 1
    # The series of each topic, as a (topics, widest) table padded by repetition.
    members = [np.unique(series_of[topics_of == k]) for k in range(topics)]
    count = np.array([max(1, m.size) for m in members], np.int64)
    table = np.zeros((topics, int(count.max())), np.int64)
    for k, m in enumerate(members):
        if m.size:
            table[k] = np.resize(m, table.shape[1])
    users = int(session_user.max()) + 1 if session_user.size else 0
    favourite = rng.integers(0, 1 << 15, size=(users, topics), dtype=np.int16)
    n = count[session_topic]
    loyal = rng.uniform(size=session_topic.size) < loyalty
    index = np.where(
        loyal,
        favourite[session_user, session_topic] % n,
        rng.integers(0, 1 << 30, size=session_topic.size) % n,
    )
    session_series = table[session_topic, index]
    on_topic = topic == session_topic[owner]
    redraw = np.flatnonzero(on_topic & (rng.uniform(size=topic.size) < focus))
    drawn = _draw_released(
        session_series[owner[redraw]], t[redraw], series_of, release, popularity, rng
    )
    out = video.copy()
    ok = drawn >= 0
    out[redraw[ok]] = drawn[ok]
    return out


def _draw_topics(
    user: np.ndarray,
    drift: np.ndarray,
    c0: np.ndarray,
    c1: np.ndarray,
    rng: np.random.Generator,
    chunk: int = 250_000,
) -> np.ndarray:
    """A topic per row from the user's preference drifted by ``drift`` (0: p0, 1: p1): the
    mixture is drawn as p1 with probability ``drift``, else p0 (rows in chunks)."""
    out = np.empty(user.size, np.int64)
    late = rng.uniform(size=user.size) < drift
    u = rng.uniform(size=user.size)
    for lo in range(0, user.size, chunk):
        rows = slice(lo, lo + chunk)
        cumulative = np.where(late[rows, None], c1[user[rows]], c0[user[rows]])
        drawn = (cumulative < u[rows, None] * cumulative[:, -1:]).sum(axis=1)
        out[rows] = np.minimum(drawn, c0.shape[1] - 1)
    return out


def _draw_released(
    topic: np.ndarray,
    t: np.ndarray,
    topics_of: np.ndarray,
    release: np.ndarray,
    popularity: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """A video of ``topic`` released by ``t``, by popularity (-1: none released yet)."""
    chosen = np.full(topic.size, -1, np.int64)
    for k in np.unique(topic):
        rows = np.flatnonzero(topic == k)
        members = np.flatnonzero(topics_of == k)
        if not members.size:
            continue
        members = members[np.argsort(release[members], kind="stable")]
        cumulative = np.cumsum(popularity[members])
        available = np.searchsorted(release[members], t[rows], side="right")
        has = available > 0
        rows, available = rows[has], available[has]
        total = cumulative[available - 1]
        pick = np.searchsorted(cumulative, rng.uniform(size=rows.size) * total, side="right")
        chosen[rows] = members[np.minimum(pick, available - 1)]
    return chosen


def write_parquet(frame: dict[str, np.ndarray], select: str, path: Path) -> None:
    """``SELECT {select} FROM frame`` (a dict of numpy columns) written as Parquet by DuckDB."""
    import duckdb

    con = duckdb.connect()
    try:
        escaped = str(path).replace("'", "''")
        con.execute(f"COPY (SELECT {select} FROM frame) TO '{escaped}' (FORMAT parquet)")
    finally:
        con.close()


def generate_events(
    out: str | Path,
    video_ids: Sequence[str],
    video_topics: Sequence[int],
    *,
    users: int = 200,
    days: float = 30.0,
    bots: int = 2,
    seed: int = 0,
    filename: str = "events.parquet",
    video_series: Sequence[int] | None = None,
) -> EventsInfo:
    """Write ``out/events.parquet`` for these videos (their topics, and series when given,
    drive the co-watch)."""
    if len(video_ids) != len(video_topics):
        raise ValueError("one topic per video id")
    if video_series is not None and len(video_series) != len(video_ids):
        raise ValueError("one series per video id")
    arrays = event_arrays(
        video_topics,
        users=users,
        days=days,
        bots=bots,
        bot_events=2000,
        seed=seed,
        video_series=video_series,
    )
    order = np.lexsort((arrays.video, arrays.user, arrays.t))  # a log is in time order
    path = Path(out) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    digits = max(4, len(str(arrays.users - 1)))
    bot_set = set(arrays.bots.tolist())
    user_names = np.array(
        [
            f"bot{u:0{digits}d}" if u in bot_set else f"user{u:0{digits}d}"
            for u in range(arrays.users)
        ],
        dtype=object,
    )
    partial = path.with_name(path.name + ".partial")
    write_parquet(
        {
            "user_id": user_names[arrays.user[order]],
            "video_id": np.asarray(video_ids, dtype=object)[arrays.video[order]],
            "t": arrays.t[order],
            "watch_seconds": arrays.watch[order],
        },
        "user_id, video_id, make_timestamp(t) AS timestamp, watch_seconds",
        partial,
    )
    partial.replace(path)
    end = START + timedelta(days=days)
    return EventsInfo(
        path=path,
        events=int(order.size),
        users=arrays.users,
        videos=len(video_ids),
        start=START,
        end=end,
        bots=[str(user_names[b]) for b in arrays.bots],
        release={
            video_ids[i]: datetime.fromtimestamp(int(arrays.release_us[i]) / 1e6, tz=UTC)
            for i in range(len(video_ids))
        },
    )
