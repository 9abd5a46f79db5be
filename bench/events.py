"""Watch-event aggregation throughput: synthetic events -> co-watch counts (sessions, 30 min gap).

Prints JSON. Goal: >= 1M events/s aggregated with DuckDB on 2 cores for 10M
synthetic events (100M when asked, where it ends within 30 minutes), with the peak memory and
the pairs generated per event.

    .venv/bin/python bench/events.py [--events 10000000] [--videos N] [--users N] [--dir DIR]

Three figures, each on the same Parquet file (generated first in a child process, so the peak
memory is the aggregation's):

* ``ingest``: ``EventStore.add_file`` on an empty store: read and validate the Parquet file,
  assign keys, drop duplicates, store the events and count them (the first ``recsys ingest
  --events``, without the catalog write);
* ``aggregate``: counting the stored events again (sessions, user caps, c_i, c_ij), the step
  that a change of options or a time split reruns;
* ``related``: normalisation, minimum support and the top-N partners of every video (SQL).

Each step also reports the CPU seconds the process spent (all threads): on a shared machine the
wall-clock figures swing with the load, the CPU work much less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--videos", type=int, default=None, help="default: events / 100")
    parser.add_argument("--users", type=int, default=None, help="default: events / 50")
    parser.add_argument("--topics", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="default: a temporary dir")
    parser.add_argument("--data", type=Path, default=None, help="an existing events Parquet file")
    parser.add_argument(
        "--memory-limit", default=None, help="DuckDB memory_limit (e.g. 6GB; default DuckDB's)"
    )
    parser.add_argument("--generate-only", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


#: Logs above this many events are generated in slices of about this size (bounded memory).
SLICE_EVENTS = 10_000_000


def generate(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    """Write ``path``: ~``args.events`` synthetic events (numpy -> Parquet via DuckDB).

    Above ``SLICE_EVENTS`` the log is written in slices of disjoint users (each slice its own
    seeded log over the same videos, so popularity and releases differ between slices) and the
    slices are merged into one file by DuckDB, so generation needs a slice's memory."""
    import duckdb
    import numpy as np

    from recsys.synth.events import event_arrays, write_parquet

    videos = args.videos or max(100, args.events // 100)
    users = args.users or max(10, args.events // 50)
    slices = max(1, -(-args.events // SLICE_EVENTS))
    started = time.perf_counter()
    parts, events, all_users = [], 0, 0
    for k in range(slices):
        slice_users = users // slices + (1 if k < users % slices else 0)
        log = event_arrays(
            np.arange(videos) % args.topics,
            users=slice_users,
            days=30,
            sessions_per_user=args.events / users / 5.0,
            session_length=5.0,
            bots=max(1, users // 20_000 // slices),
            bot_events=5000,
            seed=args.seed if slices == 1 else args.seed * 1000 + k,
        )
        part = path if slices == 1 else path.with_name(f"{path.stem}.{k:03d}.parquet")
        write_parquet(
            {"u": log.user + all_users, "v": log.video, "t": log.t, "w": log.watch},
            "'u' || u AS user_id, 'v' || v AS video_id, make_timestamp(t) AS timestamp, "
            "w AS watch_seconds",
            part,
        )
        parts.append(part)
        events += int(log.user.size)
        all_users += int(log.users)
        del log
    if slices > 1:
        con = duckdb.connect()
        try:
            con.execute("SET preserve_insertion_order = false")
            con.execute(
                f"COPY (SELECT * FROM read_parquet({[str(p) for p in parts]!r})) "
                f"TO '{path}' (FORMAT parquet)"
            )
        finally:
            con.close()
        for part in parts:
            part.unlink()
    return {
        "events": events,
        "users": all_users,
        "videos": videos,
        "slices": slices,
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": peak_rss_mb(),
        "bytes": path.stat().st_size,
    }


def _rows(path: Path) -> int:
    import duckdb

    escaped = str(path).replace("'", "''")
    row = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{escaped}')").fetchone()
    return int(row[0]) if row else 0


def step(name: str) -> None:
    """One stderr line per step with the peak memory so far: a run stopped from outside (time,
    memory) still shows where it ended."""
    print(
        f"{time.strftime('%H:%M:%S')} {name} (peak RSS {peak_rss_mb()} MB)",
        file=sys.stderr,
        flush=True,
    )


def cpu_s() -> float:
    """CPU seconds of this process, all threads (a figure less sensitive to a busy machine)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> None:
    args = parse_args()
    if args.generate_only is not None:
        print(json.dumps(generate(args, args.generate_only)))
        return
    from recsys.events import EventOptions, EventStore, merge_counts
    from recsys.settings import load_settings

    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        root = Path(scratch)
        data = root / "events.parquet"
        if args.data is not None:  # a log written by an earlier run (generation is minutes)
            data = args.data
            made = {"events": _rows(data), "file": str(data), "bytes": data.stat().st_size}
        else:
            child = [sys.executable, __file__, "--generate-only", str(data)]
            child += ["--events", str(args.events), "--topics", str(args.topics)]
            child += ["--seed", str(args.seed)]
            for name in ("videos", "users"):
                if getattr(args, name):
                    child += [f"--{name}", str(getattr(args, name))]
            step("generate")
            made = json.loads(subprocess.run(child, check=True, capture_output=True).stdout)
        settings = load_settings(root / "home")
        options = EventOptions(source="bench")
        load_before = os.getloadavg()
        result: dict[str, Any] = {
            "events": made["events"],
            "data": made,
            "cores": os.cpu_count(),
            "options": options.count_key(),
            "duckdb_memory_limit": args.memory_limit,
        }
        with EventStore.open(settings, "bench") as store:
            if args.memory_limit:
                store.con.execute(f"SET memory_limit = '{args.memory_limit}'")
            step("ingest")
            started, cpu = time.perf_counter(), cpu_s()
            report = store.add_file(data, options)
            ingest_s, ingest_cpu = time.perf_counter() - started, cpu_s() - cpu
            assert report.status == "added", report.error
            totals = store.totals()
            step("aggregate")
            started, cpu = time.perf_counter(), cpu_s()
            recount = merge_counts(store._count_all(options))
            aggregate_s, aggregate_cpu = time.perf_counter() - started, cpu_s() - cpu
            store.compact()
            step("related")
            started = time.perf_counter()
            graph = store.related(options)
            related_s = time.perf_counter() - started
        events = made["events"]
        generated = int(recount.pair_n.sum())
        result.update(
            {
                "ingest": {
                    "seconds": round(ingest_s, 2),
                    "events_per_s": round(events / ingest_s),
                    "cpu_seconds": round(ingest_cpu, 2),
                    "duplicates": report.duplicates,
                },
                "aggregate": {
                    "seconds": round(aggregate_s, 2),
                    "events_per_s": round(events / aggregate_s),
                    "cpu_seconds": round(aggregate_cpu, 2),
                    "goal_events_per_s": 1_000_000,
                },
                "related": {
                    "seconds": round(related_s, 2),
                    "pairs": len(graph.video_a),
                    "min_support": options.min_support,
                    "top_n": options.top_n,
                },
                "counts": totals,
                "pairs_generated": generated,
                "pairs_per_event": round(generated / max(1, totals["events"]), 3),
                "distinct_pairs": int(recount.pair_n.size),
                "peak_rss_mb": peak_rss_mb(),
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            }
        )
    step("done")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
