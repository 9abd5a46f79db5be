"""The co-watch counts on Ray Data (``--engine ray``): the same map and reduce, spread out.

:func:`recsys.events.aggregate.count_batch` is a pure function of the events of whole users,
and :class:`~recsys.events.aggregate.Counts` add up, so the distributed aggregation is

1. **read** the events (Parquet files with ``uid, vid, t, watch, sid``; the store exports its
   events there, or give files made elsewhere) as a Ray dataset, streamed block by block;
2. **shuffle by user**: each event gets a partition ``uid % parts`` and the dataset is grouped
   by it, so every group holds whole users;
3. **map**: :func:`count_batch` per group, emitted as rows ``(kind, a, b, n, m)``: a pair
   (kind 0: a, b, c_ij), a video (kind 1: vid, c_i, events) or a total (kind 2: its index);
4. **reduce**: a grouped sum over ``(kind, a, b)`` (Ray's hash shuffle), then the rows are
   turned back into :class:`Counts`.

Nothing but the summed counts comes back to the driver; the events never do. The result is
exactly what the local engine computes (a test compares them on the same log).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from recsys.errors import UserError
from recsys.events.aggregate import TOTALS, Counts, count_batch
from recsys.events.options import EventOptions

KIND_PAIR, KIND_VIDEO, KIND_TOTAL = 0, 1, 2
_EMPTY = np.zeros(0, np.int64)


def _rows(counts: Counts) -> dict[str, np.ndarray]:
    """``counts`` as the (kind, a, b, n, m) rows the reduce sums."""
    totals = np.array([counts.totals.get(k, 0) for k in TOTALS], np.int64)
    kind = np.concatenate(
        [
            np.full(counts.pair_a.size, KIND_PAIR, np.int64),
            np.full(counts.video.size, KIND_VIDEO, np.int64),
            np.full(totals.size, KIND_TOTAL, np.int64),
        ]
    )
    return {
        "kind": kind,
        "a": np.concatenate([counts.pair_a, counts.video, np.arange(totals.size)]).astype(np.int64),
        "b": np.concatenate(
            [counts.pair_b, np.zeros(counts.video.size + totals.size, np.int64)]
        ).astype(np.int64),
        "n": np.concatenate([counts.pair_n, counts.video_baskets, totals]).astype(np.int64),
        "m": np.concatenate(
            [np.zeros(counts.pair_a.size, np.int64), counts.video_events, np.zeros_like(totals)]
        ).astype(np.int64),
    }


def counts_from_rows(rows: dict[str, np.ndarray]) -> Counts:
    """The reduced rows back as :class:`Counts` (sorted like the local engine's)."""
    kind = np.asarray(rows.get("kind", _EMPTY), np.int64)
    a = np.asarray(rows.get("a", _EMPTY), np.int64)
    b = np.asarray(rows.get("b", _EMPTY), np.int64)
    n = np.asarray(rows.get("n", _EMPTY), np.int64)
    m = np.asarray(rows.get("m", _EMPTY), np.int64)
    counts = Counts()
    pair = (kind == KIND_PAIR) & (n != 0)
    order = np.lexsort((b[pair], a[pair]))
    counts.pair_a, counts.pair_b, counts.pair_n = a[pair][order], b[pair][order], n[pair][order]
    video = (kind == KIND_VIDEO) & ((n != 0) | (m != 0))
    order = np.argsort(a[video], kind="stable")
    counts.video = a[video][order]
    counts.video_baskets, counts.video_events = n[video][order], m[video][order]
    total = kind == KIND_TOTAL
    for index, value in zip(a[total], n[total], strict=True):
        counts.totals[TOTALS[int(index)]] = int(value)
    return counts


@contextmanager
def ray_session(address: str | None = None, cpus: int | None = None) -> Iterator[None]:
    """Ray running for the block: joined when it runs already, else started (``RAY_ADDRESS``
    or a local instance) and stopped at the end."""
    started = ensure_ray(address, cpus)
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


def ensure_ray(address: str | None = None, cpus: int | None = None) -> bool:
    """Start (or join) Ray unless it runs already; True when started here (stop it after)."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise UserError(
            "the ray engine needs the `distributed` extra: pip install 'video-recsys[distributed]'"
        ) from error
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    return True


def count_ray(
    paths: Sequence[str | Path],
    options: EventOptions,
    *,
    before: datetime | None = None,
    since: datetime | None = None,
    parts: int | None = None,
) -> Counts:
    """Co-watch counts of the events in Parquet ``paths`` (``uid, vid, t`` and optional
    ``watch``, ``sid``) computed on Ray Data (see the module docstring)."""
    with ray_session():
        import ray.data

        dataset = ray.data.read_parquet([str(p) for p in paths])
        total = dataset.count()
        if not total:
            return Counts()
        groups = parts or max(2, -(-total // max(1, options.batch_events)))

        def partition(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            batch = dict(batch)
            batch["part"] = np.asarray(batch["uid"], np.int64) % groups
            return batch

        def count_group(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            events: dict[str, Any] = {k: batch[k] for k in ("uid", "vid", "t")}
            if "watch" in batch:
                events["watch"] = np.asarray(batch["watch"], np.float64)
            if "sid" in batch:
                events["sid"] = np.asarray(batch["sid"], np.int64)
            return _rows(count_batch(events, options, before=before, since=since))

        reduced = (
            dataset.map_batches(partition, batch_format="numpy")
            .groupby("part", num_partitions=groups)
            .map_groups(count_group, batch_format="numpy")
            .groupby(["kind", "a", "b"], num_partitions=groups)
            .sum(["n", "m"])
        )
        frame = reduced.to_pandas()
        return counts_from_rows(
            {
                "kind": frame["kind"].to_numpy(),
                "a": frame["a"].to_numpy(),
                "b": frame["b"].to_numpy(),
                "n": frame["sum(n)"].to_numpy(),
                "m": frame["sum(m)"].to_numpy(),
            }
        )
