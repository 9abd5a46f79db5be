"""The synthetic watch log: seeded, Zipf-ish, sessions, bots, releases over time, topical."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest

from recsys.synth import generate_events
from recsys.synth.events import START, event_arrays

TOPICS = np.arange(60) % 4
IDS = [f"syn{i:04d}" for i in range(60)]


def test_same_seed_same_log_and_another_seed_another(tmp_path: Path) -> None:
    a = generate_events(tmp_path / "a", IDS, list(TOPICS), users=60, seed=3)
    b = generate_events(tmp_path / "b", IDS, list(TOPICS), users=60, seed=3)
    c = generate_events(tmp_path / "c", IDS, list(TOPICS), users=60, seed=4)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.path.read_bytes() != c.path.read_bytes()
    con = duckdb.connect()
    columns = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{a.path}')").fetchall()
    assert [c[0] for c in columns] == ["user_id", "video_id", "timestamp", "watch_seconds"]
    assert con.execute(f"SELECT count(*) FROM read_parquet('{a.path}')").fetchone() == (a.events,)
    assert a.events > 1000 and a.bots == ["bot0060", "bot0061"]
    outside = con.execute(
        f"SELECT count(*) FROM read_parquet('{a.path}') WHERE video_id NOT IN "
        f"(SELECT unnest({IDS!r}))"
    ).fetchone()
    assert outside == (0,)


def test_popularity_is_heavy_tailed_and_bots_binge() -> None:
    log = event_arrays(np.arange(200) % 5, users=400, bots=3, bot_events=1500, seed=1)
    human = ~np.isin(log.user, log.bots)
    views = np.sort(np.bincount(log.video[human], minlength=200))[::-1]
    assert views[:20].sum() > 0.4 * views.sum()  # the top 10% of videos: ~half the views
    rank = np.arange(1, 101)
    slope = np.polyfit(np.log(rank), np.log(views[:100] + 1), 1)[0]
    assert -1.3 < slope < -0.5  # a Zipf-like rank-frequency line (exponent 1, topics mixed)
    per_user = np.bincount(log.user, minlength=log.users)
    assert (per_user[log.bots] == 1500).all()
    assert per_user[log.bots].min() > 10 * np.median(per_user[: log.users - 3])


def test_sessions_and_releases(tmp_path: Path) -> None:
    log = event_arrays(TOPICS, users=100, days=20, seed=2)
    human = ~np.isin(log.user, log.bots)
    order = np.lexsort((log.t[human], log.user[human]))
    user, t = log.user[human][order], log.t[human][order]
    same = user[1:] == user[:-1]
    gaps_s = (t[1:] - t[:-1])[same] / 1e6
    assert np.median(gaps_s) < 600  # inside a session: minutes apart
    assert (gaps_s > 1800).mean() > 0.05  # and sessions are separated by long gaps
    assert (log.t >= log.release_us[log.video]).all()  # nothing watched before its release
    info = generate_events(tmp_path, IDS, list(TOPICS), users=100, days=20, seed=2)
    cutoff = START + timedelta(days=14)
    cold = info.cold_at(cutoff)
    assert 0 < len(cold) < len(IDS)  # some videos are new after the cut-off, most are not
    seen = (
        duckdb.connect()
        .execute(
            f"SELECT DISTINCT video_id FROM read_parquet('{info.path}') "
            f"WHERE timestamp < '{cutoff.replace(tzinfo=None).isoformat()}'"
        )
        .fetchall()
    )
    assert not set(cold) & {v for (v,) in seen}


def test_co_watch_follows_the_topics() -> None:
    log = event_arrays(TOPICS, users=300, bots=0, seed=5)
    order = np.lexsort((log.t, log.user))
    user, video, t = log.user[order], log.video[order], log.t[order]
    next_in_session = (user[1:] == user[:-1]) & ((t[1:] - t[:-1]) < 1800 * 1e6)
    same_topic = TOPICS[video[1:]] == TOPICS[video[:-1]]
    assert same_topic[next_in_session].mean() > 0.6  # chance is 0.25 with four topics


SERIES = TOPICS * 3 + (np.arange(60) // 4) % 3  # three series in each topic


def _next_in_session(log):  # type: ignore[no-untyped-def]
    order = np.lexsort((log.t, log.user))
    user, video, t = log.user[order], log.video[order], log.t[order]
    return video, (user[1:] == user[:-1]) & ((t[1:] - t[:-1]) < 1800 * 1e6)


def test_sessions_binge_a_series_and_topics_stay_as_they_were() -> None:
    plain = event_arrays(TOPICS, users=300, bots=0, seed=5)
    series = event_arrays(TOPICS, users=300, bots=0, seed=5, video_series=SERIES)
    # the series only choose videos inside the topic each event already had
    assert np.array_equal(plain.t, series.t) and np.array_equal(plain.user, series.user)
    assert np.array_equal(TOPICS[plain.video], TOPICS[series.video])
    shares = []
    for log in (plain, series):
        video, nxt = _next_in_session(log)
        same_topic = TOPICS[video[1:]] == TOPICS[video[:-1]]
        same_series = SERIES[video[1:]] == SERIES[video[:-1]]
        shares.append(same_series[nxt & same_topic].mean())
    assert shares[0] < 0.45  # topics only: a third of same-topic neighbours share a series
    assert shares[1] > 0.6  # series: sessions stay on one


def test_series_must_match_the_videos() -> None:
    with pytest.raises(ValueError, match="one series per video"):
        event_arrays(TOPICS, users=10, video_series=SERIES[:-1])
