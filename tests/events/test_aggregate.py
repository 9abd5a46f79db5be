"""Co-watch counts and relatedness on hand-made logs whose counts are worked out by hand."""

from __future__ import annotations

import itertools
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from recsys.events import Counts, EventOptions, EventStore, count_batch, merge_counts
from recsys.settings import Settings
from tests.events.logs import T0, at, write_csv

# Log A (minutes after T0). Sessions with a 30 min gap:
#   u1 {v1, v2, v3} (0, 10, 20), u1 {v1, v4} (100, 110), u2 {v1, v2}, u3 {v2}, u3 {v3}
# so N = 5, c1 = 3, c2 = 3, c3 = 2, c4 = 1, c12 = 2, c13 = c23 = c14 = 1.
LOG_A = [
    ("u1", "v1", at(0)),
    ("u1", "v2", at(10)),
    ("u1", "v3", at(20)),
    ("u1", "v1", at(100)),
    ("u1", "v4", at(110)),
    ("u2", "v1", at(0)),
    ("u2", "v2", at(5)),
    ("u3", "v2", at(0)),
    ("u3", "v3", at(40)),
]

_FRESH = itertools.count()


def _graph(
    settings: Settings, rows: list[tuple[object, ...]], tmp_path: Path, **options: object
) -> tuple[dict[tuple[str, str], float], dict[str, int], int]:
    """(pairs {(a, b): weight}, c_i by video, N) of ``rows`` in a fresh store."""
    opts = EventOptions(source=f"fresh{next(_FRESH)}", **options)  # type: ignore[arg-type]
    path = write_csv(tmp_path / f"{opts.source}.csv", rows)
    with EventStore.open(settings, opts.source) as store:
        assert store.add_file(path, opts).status == "added"
        graph = store.related(opts)
    return graph.as_dict(), graph.counts, graph.baskets


def _counts_by_id(store: EventStore) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    names = {key: video for video, key in store.keys().items()}
    counts = store.counts()
    pairs = {tuple(sorted((names[a], names[b]))): n for (a, b), n in counts.pair_dict().items()}
    return pairs, {names[k]: n for k, n in counts.video_dict().items()}  # type: ignore[misc]


def test_sessions_split_on_the_inactivity_gap(sqlite_settings: Settings, tmp_path: Path) -> None:
    pairs, c, n = _graph(sqlite_settings, LOG_A, tmp_path, min_support=1, alpha=0.0)
    assert n == 5
    assert c == {"v1": 3, "v2": 3, "v3": 2, "v4": 1}
    # alpha 0: the weight is the count itself
    assert pairs == {("v1", "v2"): 2, ("v1", "v3"): 1, ("v2", "v3"): 1, ("v1", "v4"): 1}
    # A 90 min gap joins u1's two sessions and u3's: v4 now meets v2 and v3 as well.
    pairs, c, n = _graph(
        sqlite_settings, LOG_A, tmp_path, min_support=1, alpha=0.0, session_gap_s="90m"
    )
    assert n == 3 and c == {"v1": 2, "v2": 3, "v3": 2, "v4": 1}
    assert pairs == {
        ("v1", "v2"): 2,
        ("v1", "v3"): 1,
        ("v1", "v4"): 1,
        ("v2", "v3"): 2,
        ("v2", "v4"): 1,
        ("v3", "v4"): 1,
    }


def test_windows_count_users_within_the_window(sqlite_settings: Settings, tmp_path: Path) -> None:
    pairs, c, n = _graph(
        sqlite_settings, LOG_A, tmp_path, cowatch="window", window_s="1h", min_support=1, alpha=0
    )
    # u1: v1@0-v2@10, v1@0-v3@20, v2-v3, v1@100-v4@110 (v3@20-v1@100 is 80 min apart);
    # u2: v1-v2; u3: v2@0-v3@40. Baskets are users: N = 3, c_i = users who watched i.
    assert n == 3 and c == {"v1": 2, "v2": 3, "v3": 2, "v4": 1}
    assert pairs == {("v1", "v2"): 2, ("v1", "v3"): 1, ("v2", "v3"): 2, ("v1", "v4"): 1}
    day, _, _ = _graph(
        sqlite_settings, LOG_A, tmp_path, cowatch="window", min_support=1, alpha=0
    )  # 24 h: all of u1's videos meet
    assert day[("v2", "v4")] == 1 and day[("v3", "v4")] == 1 and day[("v1", "v2")] == 2


def test_power_and_pmi_normalisation_by_hand(sqlite_settings: Settings, tmp_path: Path) -> None:
    cosine, _, _ = _graph(sqlite_settings, LOG_A, tmp_path, min_support=1)  # alpha 0.5
    assert cosine[("v1", "v2")] == pytest.approx(2 / math.sqrt(3 * 3))
    assert cosine[("v1", "v3")] == pytest.approx(1 / math.sqrt(3 * 2))
    assert cosine[("v1", "v4")] == pytest.approx(1 / math.sqrt(3 * 1))
    lift, _, _ = _graph(sqlite_settings, LOG_A, tmp_path, min_support=1, alpha=1.0)
    assert lift[("v1", "v2")] == pytest.approx(2 / 9)
    pmi, _, _ = _graph(sqlite_settings, LOG_A, tmp_path, min_support=1, normalise="pmi")
    # log(c_ij N / (c_i c_j)), N = 5: only the positive ones are related.
    assert pmi == {
        ("v1", "v2"): pytest.approx(math.log(2 * 5 / 9)),
        ("v1", "v4"): pytest.approx(math.log(5 / 3)),
    }


def test_min_support_and_top_n(sqlite_settings: Settings, tmp_path: Path) -> None:
    supported, _, _ = _graph(sqlite_settings, LOG_A, tmp_path)  # default min support 2
    assert set(supported) == {("v1", "v2")}
    top, _, _ = _graph(sqlite_settings, LOG_A, tmp_path, min_support=1, top_n=1)
    # v1 -> v2 (0.67), v2 -> v1, v3 -> v1 (tie with v2 at 0.41 and 1 co-watch: lower id),
    # v4 -> v1: a pair stays when it is in either end's list.
    assert set(top) == {("v1", "v2"), ("v1", "v3"), ("v1", "v4")}


def test_a_bot_contributes_at_most_the_user_cap(sqlite_settings: Settings, tmp_path: Path) -> None:
    # The bot watches v1 then v2, 500 times, 40 min apart: 500 sessions of {v1, v2}.
    bot = []
    for k in range(500):
        bot += [("bot", "v1", at(40 * k)), ("bot", "v2", at(40 * k + 1))]
    human = [("u1", "v1", at(0)), ("u1", "v2", at(3)), ("u1", "v3", at(6))]
    uncapped, c, _ = _graph(sqlite_settings, bot + human, tmp_path, alpha=0, user_cap=0)
    assert uncapped[("v1", "v2")] == 501 and c["v1"] == 501
    path = write_csv(tmp_path / "bot.csv", bot + human)
    options = EventOptions(source="capped", alpha=0, user_cap=10, min_support=1)
    with EventStore.open(sqlite_settings, "capped") as store:
        store.add_file(path, options)
        totals = store.totals()
        capped = store.related(options)
    # The bot's latest 10 events: 5 sessions; the human's 3 events count in full.
    assert capped.as_dict()[("v1", "v2")] == 5 + 1 and capped.counts["v1"] == 6
    assert totals["capped_users"] == 1 and totals["capped_events"] == 990
    assert totals["events"] == 10 + 3


def test_min_watch_time(sqlite_settings: Settings, tmp_path: Path) -> None:
    rows = [
        ("u1", "v1", at(0), 30),
        ("u1", "v2", at(1), 2),  # a skip
        ("u1", "v3", at(2), ""),  # unknown watch time: counted
        ("u2", "v1", at(0), 40),
        ("u2", "v3", at(1), 50),
    ]
    options = EventOptions(source="watch", min_watch_s=10, min_support=1, alpha=0)
    with EventStore.open(sqlite_settings, "watch") as store:
        store.add_file(write_csv(tmp_path / "w.csv", rows), options)
        graph = store.related(options)
        assert store.totals()["short_events"] == 1
    assert graph.as_dict() == {("v1", "v3"): 2}
    every, _, _ = _graph(sqlite_settings, rows, tmp_path, min_support=1, alpha=0)
    assert every[("v1", "v2")] == 1


def test_session_ids_group_their_events(sqlite_settings: Settings, tmp_path: Path) -> None:
    rows = [
        ("u1", "v1", at(0), "", "s1"),
        ("u1", "v2", at(300), "", "s1"),  # 5 h later, the same session id: one session
        ("u1", "v3", at(301), "", ""),  # untagged: gap sessions among untagged events
        ("u1", "v4", at(302), "", ""),
        ("u2", "v1", at(0), "", "s1"),  # another user's s1 is another session
        ("u2", "v3", at(1), "", "s2"),
    ]
    header = ["user_id", "video_id", "timestamp", "watch_seconds", "session_id"]
    path = write_csv(tmp_path / "s.csv", rows, header)
    options = EventOptions(source="sid", min_support=1, alpha=0)
    with EventStore.open(sqlite_settings, "sid") as store:
        store.add_file(path, options)
        graph = store.related(options)
    assert graph.baskets == 4
    assert graph.as_dict() == {("v1", "v2"): 1, ("v3", "v4"): 1}


def _random_log(seed: int, users: int = 30, events: int = 600) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "uid": rng.integers(0, users, events),
        "vid": rng.zipf(1.5, events) % 25,
        "t": rng.integers(0, 3 * 3600, events) * 1_000_000 + 1_700_000_000_000_000,
        "watch": rng.uniform(0, 60, events),
    }


def _same(a: Counts, b: Counts) -> None:
    assert a.totals == b.totals
    assert a.video_dict() == b.video_dict() and a.pair_dict() == b.pair_dict()
    assert dict(zip(a.video.tolist(), a.video_events.tolist(), strict=True)) == dict(
        zip(b.video.tolist(), b.video_events.tolist(), strict=True)
    )


@pytest.mark.parametrize("cowatch", ["session", "window"])
def test_batches_of_whole_users_add_up_to_the_whole(cowatch: str) -> None:
    """The map/reduce contract a distributed engine relies on."""
    log = _random_log(1)
    options = EventOptions(cowatch=cowatch, window_s="20m", user_cap=15, min_watch_s=5)  # type: ignore[arg-type]
    whole = count_batch(log, options)
    assert whole.totals["capped_users"] > 0 and whole.pair_a.size > 0
    parts = []
    for k in range(3):
        mine = log["uid"] % 3 == k
        parts.append(count_batch({name: v[mine] for name, v in log.items()}, options))
    _same(merge_counts(parts), whole)
    shuffled = np.random.default_rng(2).permutation(log["uid"].size)
    _same(count_batch({name: v[shuffled] for name, v in log.items()}, options), whole)


def test_count_batch_packs_or_lexsorts_alike() -> None:
    """Wide keys (that do not fit one int64) take the lexsort path with the same result."""
    log = _random_log(3)
    narrow = count_batch(log, EventOptions())
    wide = dict(log)
    wide["uid"] = log["uid"] + (1 << 40)  # 41-bit user keys + 35-bit seconds: over 63 bits
    _same(count_batch(wide, EventOptions()), narrow)


def test_a_time_cutoff_counts_only_the_events_before_it(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    cutoff = T0 + timedelta(minutes=50)
    options = EventOptions(source="cut", min_support=1)
    with EventStore.open(sqlite_settings, "cut") as store:
        store.add_file(write_csv(tmp_path / "a.csv", LOG_A), options)
        past = store.related(options, before=cutoff)
        future = store.related(options, since=cutoff)
        whole = store.related(options)
    early = [r for r in LOG_A if str(r[2]) < at(50)]
    late = [r for r in LOG_A if str(r[2]) >= at(50)]
    assert past.as_dict() == _graph(sqlite_settings, early, tmp_path, min_support=1)[0]
    assert future.as_dict() == _graph(sqlite_settings, late, tmp_path, min_support=1)[0]
    assert ("v1", "v4") in whole.as_dict() and ("v1", "v4") not in past.as_dict()
    assert future.as_dict() == {("v1", "v4"): pytest.approx(1.0)}


def test_changed_count_options_recount_the_history(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "a.csv", LOG_A)
    with EventStore.open(sqlite_settings, "re") as store:
        store.add_file(path, EventOptions(source="re"))
        wider = EventOptions(source="re", session_gap_s="90m", min_support=1)
        assert store.ensure_counts(wider) is True
        again = store.related(wider).as_dict()
        assert store.ensure_counts(wider) is False
    assert again == _graph(sqlite_settings, LOG_A, tmp_path, session_gap_s="90m", min_support=1)[0]


def test_a_user_with_a_million_views_is_capped_and_reported() -> None:
    """The default cap keeps a million-view account to its latest 1000 events, counted."""
    n = 1_000_000
    log = {
        "uid": np.zeros(n, np.int64),
        "vid": np.arange(n, dtype=np.int64) % 5000,
        "t": 1_700_000_000_000_000 + np.arange(n, dtype=np.int64) * 5_000_000,
    }
    counts = count_batch(log, EventOptions())
    assert counts.totals["capped_users"] == 1
    assert counts.totals["capped_events"] == n - 1000 and counts.totals["events"] == 1000
    assert counts.totals["baskets"] == 1 and counts.pair_n.size == 1000 * 999 // 2


@pytest.mark.parametrize("cowatch", ["session", "window"])
def test_uncapped_long_sessions_are_cut_and_reported(cowatch: str) -> None:
    """Without a cap, a 2500-event session pairs in pieces of MAX_BASKET events (memory stays
    bounded) and the cut is reported; a short session is untouched."""
    from recsys.events.aggregate import MAX_BASKET

    long = 2500
    log = {
        "uid": np.r_[np.zeros(long, np.int64), np.ones(3, np.int64)],
        "vid": np.r_[np.arange(long) % 1200, [0, 1, 2]].astype(np.int64),
        "t": 1_700_000_000_000_000 + np.r_[np.arange(long), np.arange(3)] * 5_000_000,
    }
    counts = count_batch(log, EventOptions(cowatch=cowatch, user_cap=0))  # type: ignore[arg-type]
    pairs = counts.pair_dict()
    # sessions: user 1's and each of the 3 pieces of user 0's; windows: one per user
    assert pairs[(0, 1)] == (4 if cowatch == "session" else 2)
    if cowatch == "session":
        assert counts.totals["long_baskets"] == 1 and counts.totals["baskets"] == 3 + 1
    else:
        assert counts.totals["long_baskets"] == long - MAX_BASKET - 1
        assert counts.totals["baskets"] == 2
