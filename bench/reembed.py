"""Re-embed from a full feature cache: `recsys embed` of a new model, as JSON.

N videos whose features are all cached (one real decoded clip's ``content`` features under N
content hashes) are re-embedded by ``run_refresh`` with a new model, end to end: selection,
cache reads, stage B, store files, ``embeddings`` rows, the store's compaction. Each run is a
fresh home in its own process (its seconds and peak RSS are its own). Variants, measured in the
same invocation so that their ratio holds on a shared machine:

- ``packed``: this tree, the cache written by ``CacheBatch`` (packs of 4,096 entries);
- ``threaded``: the same with the refresh's background writer thread (``BACKGROUND_WRITES``:
  cached units commit while the next one is read and embedded; the default since it won at
  1M), and ``serial`` without it;
- ``files``: this tree reading a cache in the one-file-per-entry layout of older releases
  (``row`` NULL), what an existing home reads until its first compaction;
- ``base``: the code of ``--base-ref`` (default: the commit before the packed cache), exported
  with ``git archive`` to a temporary folder, on its own one-file-per-entry cache;
- ``ref``: the code of ``--base-ref`` on the packed cache (``--base-ref`` a commit that has
  packs): the same run before a change, for alternating comparisons.

``--repeat R`` runs the variants R times, alternating. ``--reuse-setup`` builds each size's
packed home once and hands every packed-layout run a copy (the pack files hard-linked, the
database copied): a 1M setup writes 10 GB of packs, longer than the run it prepares. The packs
of a copy are the same files, warm in the page cache for every run alike.

    nice -n 5 .venv/bin/python bench/reembed.py --videos 20000,100000
    nice -n 5 .venv/bin/python bench/reembed.py --videos 1000000 --variants packed
    .venv/bin/python bench/reembed.py --videos 1000000 --variants packed,ref --base-ref HEAD~3 \\
        --repeat 3 --reuse-setup
    .venv/bin/python bench/reembed.py --videos 20000 --variants packed --profile /tmp/re.prof

Goal: >= 20,000 videos/s end to end at 1M videos.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASE_REF = "9576eb9"  # the feature cache before packs (one file per entry)
GOAL = 20_000.0


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- child
def _fill(
    args: argparse.Namespace,
    database: Any,
    settings: Any,
    extractor: Any,
    features: Any,
    clip: Path,
) -> None:
    """N videos and their cached features (one clip's features under N content hashes)."""
    from datetime import UTC, datetime

    from sqlalchemy import insert

    from recsys.db.models import FeatureCacheEntry, Video
    from recsys.features import CacheBatch, FeatureCache
    from recsys.features.cache import entry_path

    n = args.videos
    now = datetime.now(UTC)
    with database.engine.begin() as connection:
        for start in range(0, n, 50_000):
            connection.execute(
                insert(Video.__table__),  # type: ignore[arg-type]
                [
                    {
                        "id": i + 1,
                        "video_id": f"vid{i:07d}",
                        "uri": str(clip),
                        "content_hash": f"{i:064x}",
                        "status": "ready",
                        "tags": [],
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(start, min(start + 50_000, n))
                ],
            )
    if args.layout == "files":  # the layout of older releases, written as they wrote it
        version = str(extractor.version)
        rows = []
        for i in range(n):
            content_hash = f"{i:064x}"
            relative = entry_path(content_hash, extractor.name, version)
            path = settings.features_dir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            features.save(path)
            rows.append(
                {
                    "content_hash": content_hash,
                    "extractor": extractor.name,
                    "extractor_version": version,
                    "path": str(relative),
                    "info": {},
                }
            )
        with database.engine.begin() as connection:
            for start in range(0, n, 50_000):
                connection.execute(
                    insert(FeatureCacheEntry.__table__),  # type: ignore[arg-type]
                    rows[start : start + 50_000],
                )
    else:
        cache = CacheBatch(FeatureCache(settings, database), extractor, size=4096)
        for i in range(n):
            cache.add(f"{i:064x}", features)
        cache.flush()


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One fresh home: N videos, their cached features, then ``run_refresh`` of a new model."""
    import torch

    from recsys.db import open_database
    from recsys.features import get_extractor
    from recsys.media import decode_video
    from recsys.models import FusionModel, ModelConfig, input_dims, save_model
    from recsys.refresh import run_refresh
    from recsys.refresh.options import RefreshOptions
    from recsys.settings import load_settings
    from recsys.synth.writer import write_test_video

    n = args.videos
    home = Path(args.home)
    shutil.rmtree(home, ignore_errors=True)
    stamp = time.perf_counter()
    if args.setup_from:  # a copy of a home set up once: packs hard-linked, database copied
        source = Path(args.setup_from)
        shutil.copytree(source, home, copy_function=os.link, ignore=shutil.ignore_patterns("*.db*"))
        for path in source.glob("*.db*"):
            shutil.copy2(path, home / path.name)
    home.mkdir(parents=True, exist_ok=True)
    settings = load_settings(home)
    settings.ensure_dirs()
    database = open_database(settings)
    extractor = get_extractor("content", settings=settings)
    clip = home / "clip.mp4"
    if not args.setup_from:
        write_test_video(clip, seconds=2.0)
    features = extractor.extract(decode_video(clip))
    if not args.setup_from:
        _fill(args, database, settings, extractor, features, clip)
    setup_s = time.perf_counter() - stamp
    _log(f"  {args.layout}: {n} videos with cached features set up in {setup_s:.1f}s")
    if args.setup_only:
        database.dispose()
        return {"setup_s": round(setup_s, 2)}
    dims = input_dims([features])
    torch.manual_seed(0)
    config = ModelConfig(
        extractor=extractor.name,
        extractor_version=extractor.version,
        visual_dim=dims[0],
        audio_dim=dims[1],
        dim=256,
        hidden=256,
    )
    model_version = save_model(settings, database, FusionModel(config), activate=True)
    if args.threaded or args.serial:
        import recsys.refresh.local as local_module

        local_module.BACKGROUND_WRITES = bool(args.threaded)
    options = RefreshOptions(
        model_version=model_version, batch_size=args.batch_size, progress=False
    )
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    summary = run_refresh(settings, database, options)
    wall = time.perf_counter() - started
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        profiler.dump_stats(args.profile)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        print(text.getvalue(), file=sys.stderr)
    database.dispose()
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    import recsys

    return {
        "code": str(Path(recsys.__file__).parents[1]),
        "videos": n,
        "setup_s": round(setup_s, 2),
        "embedded": summary.embedded,
        "cache_hits": summary.cache_hits,
        "decoded": summary.decoded,
        "seconds": round(wall, 3),
        "videos_per_s": round(summary.embedded / wall, 1) if wall else None,
        "stage_seconds": {k: round(v, 3) for k, v in summary.stage_seconds.items()},
        "store_compaction_s": round(float(summary.compaction.get("seconds", 0.0)), 3),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# --------------------------------------------------------------------------- driver
def _export(ref: str, into: Path) -> Path:
    """The recsys package of ``ref`` in a folder of its own (nothing in the tree changes)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "recsys"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _admin(url: str, statement: str) -> None:
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(statement)  # type: ignore[arg-type]


def run_child(
    n: int,
    variant: str,
    args: argparse.Namespace,
    base: Path | None,
    *,
    setup_from: Path | None = None,
    setup_only: bool = False,
) -> dict[str, Any]:
    home = Path(args.workdir) / (f"pristine{n}" if setup_only else f"{variant}{n}")
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--videos",
        str(n),
        "--layout",
        "files" if variant in ("files", "base") else "packed",
        "--home",
        str(home),
        "--batch-size",
        str(args.batch_size),
    ]
    if args.profile:
        command += ["--profile", f"{args.profile}.{variant}{n}"]
    if args.keep:
        command.append("--keep")
    if variant in ("threaded", "serial"):
        command.append(f"--{variant}")
    if setup_from is not None:
        command += ["--setup-from", str(setup_from)]
    if setup_only:
        command.append("--setup-only")
    env = dict(os.environ)
    code = base if variant in ("base", "ref") else ROOT
    env["PYTHONPATH"] = str(code)
    database = None
    if args.database_url:  # a fresh PostgreSQL database per run, dropped afterwards
        database = f"reembed_{variant}{n}_{os.getpid()}"
        _admin(args.database_url, f'CREATE DATABASE "{database}"')
        env["RECSYS_DATABASE_URL"] = args.database_url.rsplit("/", 1)[0] + f"/{database}"
    load = os.getloadavg()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    finally:
        if database is not None:
            _admin(args.database_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        return {"error": done.stderr[-2000:], "returncode": done.returncode}
    out: dict[str, Any] = json.loads(done.stdout)
    out["load_average_before"] = [round(x, 2) for x in load]
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _median(values: list[Any]) -> float:
    ordered = sorted(float(v) for v in values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--videos", default="20000", help="comma-separated sizes")
    parser.add_argument("--variants", default="packed,serial,files,base")
    parser.add_argument("--base-ref", default=BASE_REF)
    parser.add_argument("--batch-size", type=int, default=64, help="the refresh's default")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server (URL of a database to connect to): each run gets a fresh one",
    )
    parser.add_argument("--workdir", default=str(ROOT / "bench" / "out" / "reembed"))
    parser.add_argument("--profile", default=None, help="cProfile file prefix")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the variants, alternating")
    parser.add_argument(
        "--reuse-setup",
        action="store_true",
        help="set each size's packed home up once; every packed-layout run gets a copy",
    )
    parser.add_argument("--setup-from", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--layout", default="packed", help=argparse.SUPPRESS)
    parser.add_argument("--home", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threaded", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serial", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.videos = int(args.videos)
        print(json.dumps(child(args)))
        return
    variants = [v for v in args.variants.split(",") if v]
    base = None
    scratch = Path(tempfile.mkdtemp(prefix="reembed-base-"))
    try:
        if "base" in variants or "ref" in variants:
            base = _export(args.base_ref, scratch)
        runs: dict[str, dict[str, Any]] = {}
        for n in [int(x) for x in args.videos.split(",")]:
            per: dict[str, Any] = {}
            pristine = None
            if args.reuse_setup and any(v not in ("files", "base") for v in variants):
                _log(f"setting up {n} videos once")
                per["setup"] = run_child(n, "packed", args, None, setup_only=True)
                pristine = Path(args.workdir) / f"pristine{n}"
            for round_ in range(args.repeat):
                for variant in variants:
                    _log(f"{variant} at {n} videos (round {round_ + 1})")
                    packed = variant not in ("files", "base")
                    out = run_child(n, variant, args, base, setup_from=pristine if packed else None)
                    per.setdefault(variant, []).append(out)
                    _log(f"  -> {out.get('videos_per_s')} videos/s")
            if pristine is not None:
                shutil.rmtree(pristine, ignore_errors=True)
            speeds = {
                k: [r.get("videos_per_s") for r in v] for k, v in per.items() if isinstance(v, list)
            }
            for k, v in list(per.items()):
                if isinstance(v, list) and len(v) == 1:
                    per[k] = v[0]  # one round: the layout of earlier reports
            best = {k: max((s for s in v if s), default=None) for k, v in speeds.items()}
            if best.get("packed"):
                per["ratio"] = {  # of the medians when repeated
                    f"packed_vs_{k}": round(_median(speeds["packed"]) / _median(v), 2)
                    for k, v in speeds.items()
                    if k != "packed" and all(v)
                }
                per["goal_20k_met"] = _median(speeds["packed"]) >= GOAL
            runs[str(n)] = per
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(Path(args.workdir), ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "reembed",
                "base_ref": args.base_ref,
                "batch_size": args.batch_size,
                "database": "postgresql" if args.database_url else "sqlite",
                "cpus": os.cpu_count(),
                "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
