"""The whole pipeline in one call: corpus → ingest → train → embed → index → examples.

``recsys demo`` wraps :func:`run_demo`; every step is the same library function the individual
commands call, and every step is incremental, so a second run reuses what the first one did
(the corpus, the catalog, the feature cache, the trained model, the embeddings and the index).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from recsys.choices import Fusion, PairSource, parse_choice
from recsys.db import Database, ModelVersion, RelatedPair, Video, VideoStatus
from recsys.db.models import ModelStatus
from recsys.errors import UserError
from recsys.settings import Settings

log = logging.getLogger(__name__)
Say = Callable[[str], None]
STATE_FILE = "demo-state.json"


class DemoError(UserError, RuntimeError):
    """A demo step could not run; the message says which and what to do.

    Still a ``RuntimeError`` for callers that catch that."""


@dataclass
class DemoOptions:
    """Defaults fit a 2-core machine: the whole pipeline in a few minutes."""

    videos_dir: Path | None = None  # the user's own videos (a directory, scanned recursively)
    manifest: Path | None = None  # or a manifest CSV (file/uri, video_id, title, category, tags)
    related: Path | None = None  # co-watch CSV; default: cowatch.csv beside the manifest
    count: int = 240  # synthetic videos to generate (when neither of the above is given)
    topics: int = 8
    seconds: float = 3.0
    seed: int = 0
    fusion: Fusion = Fusion.LATE
    epochs: int = 30
    dim: int = 256
    workers: int | None = None
    examples: int = 3

    def __post_init__(self) -> None:
        self.fusion = parse_choice(Fusion, self.fusion, "fusion")


@dataclass
class DemoReport:
    home: str
    corpus: str | None
    ingest: dict[str, int]
    related_pairs: int
    model_version: str
    model_reused: bool
    training_pairs: str
    evaluation: dict[str, Any]
    refresh: dict[str, Any]
    index: dict[str, Any]
    examples: list[dict[str, Any]] = field(default_factory=list)
    category_match_at_10: float | None = None
    chance_category_match: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _corpus(settings: Settings, options: DemoOptions, say: Say) -> tuple[list[Path], Path | None]:
    """The inputs to ingest, and the related-pairs CSV if there is one."""
    if options.manifest is not None:
        related = options.related or options.manifest.parent / "cowatch.csv"
        return [options.manifest], related if related.exists() else None
    if options.videos_dir is not None:
        return [options.videos_dir], options.related
    from recsys.synth import generate_corpus

    name = f"demo-corpus-{options.count}v-{options.topics}t-{options.seconds:g}s-seed{options.seed}"
    directory = settings.resolved_home / name
    manifest = directory / "manifest.csv"
    if manifest.exists() and (directory / "cowatch.csv").exists():
        say(f"corpus: reusing {directory}")
    else:
        say(
            f"corpus: writing {options.count} synthetic videos over {options.topics} topics "
            f"to {directory}"
        )
        generate_corpus(
            directory,
            videos=options.count,
            topics=options.topics,
            seconds=options.seconds,
            seed=options.seed,
        )
    return [manifest], directory / "cowatch.csv"


def _pair_source(database: Database) -> PairSource:
    """Train on the related graph when there is one, else categories, else self-supervised."""
    with database.session() as session:
        if session.scalar(select(func.count()).select_from(RelatedPair)):
            return PairSource.RELATED
        categories = session.scalar(
            select(func.count(func.distinct(Video.category))).where(Video.category.is_not(None))
        )
    return PairSource.CATEGORIES if (categories or 0) >= 2 else PairSource.SELF


def _catalog_signature(database: Database) -> str:
    with database.session() as session:
        hashes = session.scalars(
            select(Video.content_hash)
            .where(Video.status.in_([VideoStatus.READY.value, VideoStatus.STALE.value]))
            .order_by(Video.content_hash)
        ).all()
    return hashlib.sha256("".join(h or "" for h in hashes).encode()).hexdigest()[:16]


def _train(
    settings: Settings, database: Database, options: DemoOptions, pairs: PairSource, say: Say
) -> tuple[str, bool, dict[str, Any], str]:
    """Train (or reuse, when catalog and settings are unchanged) and activate the model when
    the model gate lets it; returns its version, whether reused, its evaluation and the gate's
    verdict."""
    from recsys.models import activate_model
    from training import TrainConfig, train_model

    state_path = settings.resolved_home / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    key = json.dumps(
        [
            options.fusion,
            pairs,
            options.epochs,
            options.dim,
            options.seed,
            _catalog_signature(database),
        ]
    )
    previous = state.get("models", {}).get(key)
    if previous:
        with database.session() as session:
            model = session.get(ModelVersion, previous["version"])
        if model is not None:
            say(f"train: reusing model {model.version} (same catalog and settings)")
            if model.status == ModelStatus.READY:  # passed the model gate
                activate_model(database, model.version)
            return model.version, True, previous.get("evaluation", {}), model.status_reason or ""
    say(f"train: {options.fusion} fusion on {pairs} pairs, {options.epochs} epochs")
    result = train_model(
        settings,
        database,
        TrainConfig(
            fusion=options.fusion,
            pairs=pairs,
            epochs=options.epochs,
            dim=options.dim,
            seed=options.seed,
            activate=True,
            feature_workers=options.workers,
        ),
    )
    evaluation = result.metrics.get("validation", {})
    state.setdefault("models", {})[key] = {"version": result.version, "evaluation": evaluation}
    state_path.write_text(json.dumps(state, indent=2, sort_keys=True))
    return result.version, False, evaluation, result.activation


def _served_model(database: Database, version: str, reason: str, say: Say) -> str:
    """The model whose embeddings the demo indexes: ``version`` when it is active, else the
    active model; never one the model gate kept inactive."""
    from recsys.models.registry import active_model_version

    active = active_model_version(database)
    if active == version:
        return version
    if active is None:
        raise DemoError(
            f"train: model {version} was not activated ({reason}); no model is active, so no "
            "index is published: see `recsys models list`, train with other options "
            f"(`recsys train`), or serve it anyway with `recsys models activate {version} --force`"
        )
    say(f"train: model {version} was not activated ({reason}); serving the active model {active}")
    return active


def _index(settings: Settings, database: Database, model_version: str, say: Say) -> dict[str, Any]:
    """Build and publish an index unless the served one already covers these embeddings.

    What is served is read from the ``CURRENT`` pointer and the manifest it names (not from
    the database's bookkeeping); an unreadable one is rebuilt.
    """
    from index import BuildOptions, IndexLoadError, active_manifest, build_index
    from recsys.catalog import embedding_counts

    with database.session() as session:
        model = session.get(ModelVersion, model_version)
        assert model is not None
        counts = embedding_counts(session, model)
    try:
        current = active_manifest(settings)
    except IndexLoadError as error:
        say(f"index: the served index cannot be read ({error}); rebuilding")
        current = None
    if (
        current is not None
        and current.model_version == model_version
        and current.count == counts.embedded
    ):
        say(f"index: reusing {current.version} ({current.count} vectors)")
        return {
            "version": current.version,
            "factory": current.factory,
            "count": current.count,
            "recall_at_k": current.recall_at_k,
            "k": current.k,
            "recall_at_10": current.recall_at_k if current.k == 10 else None,
            "reused": True,
        }
    say("index: building, checking recall against exact search, publishing")
    result = build_index(settings, database, BuildOptions(model_version=model_version), say)
    payload = result.as_dict()
    payload.pop("manifest", None)
    payload["reused"] = False
    return payload


def _examples(
    settings: Settings, database: Database, count: int, seed: int
) -> tuple[list[dict[str, Any]], float | None, float | None]:
    """A few queries against the published index and the category agreement of the top 10,
    each answered by the serving pipeline with the plan ``GET /similar/{id}`` builds by
    default (hybrid when the index has a co-watch graph, near-duplicates left out): what the
    demo prints is what the server it starts answers."""
    from index import load_active
    from serving.errors import ServingError
    from serving.pipeline import run
    from serving.plan import ByVideo, QueryPlan
    from serving.state import build_state

    loaded = load_active(settings)
    if loaded is None:
        raise DemoError("no index is published; run `recsys index build`")
    state = build_state(settings, database, loaded)
    catalog = state.catalog
    positions = catalog.positions_of(loaded.ids)
    served = [int(p) for p in positions.tolist() if p >= 0 and catalog.is_servable(int(p))]
    if not served:
        return [], None, None
    categories = [catalog.info(p).category for p in served]
    has_categories = any(categories)
    matches: list[float] = []
    examples: list[dict[str, Any]] = []
    rng = np.random.default_rng(seed)
    shown = set(rng.choice(len(served), size=min(count, len(served)), replace=False).tolist())
    for number, (position, category) in enumerate(zip(served, categories, strict=True)):
        video_id = catalog.video_ids[position]
        try:
            body = run(state, QueryPlan(ByVideo(video_id), k=10))
        except ServingError as error:  # e.g. a vector a compressed index cannot return
            log.info("demo: no example for %s: %s", video_id, error)
            continue
        results = body["results"]
        if has_categories and category and results:
            matches.append(float(np.mean([r["category"] == category for r in results])))
        if number in shown:
            examples.append(
                {
                    "video_id": video_id,
                    "title": catalog.titles[position],
                    "category": category,
                    "source": body["source"],
                    # the first 5 of the top 10: what `?k=5` answers (a prefix, whatever k)
                    "similar": [
                        {
                            "video_id": r["video_id"],
                            "category": r["category"],
                            "score": round(r["score"], 3),
                        }
                        for r in results[:5]
                    ],
                }
            )
    if not matches:
        return examples, None, None
    labelled = [c for c in categories if c]
    _, counts = np.unique(labelled, return_counts=True)
    # Chance: the probability that a random other video shares the query's category.
    chance = float(np.sum(counts * (counts - 1)) / max(len(labelled) * (len(labelled) - 1), 1))
    return examples, float(np.mean(matches)), chance


def run_demo(
    settings: Settings, database: Database, options: DemoOptions, say: Say = log.info
) -> DemoReport:
    """Run every stage of the pipeline (see the module docstring); returns what it did."""
    from recsys.ingest import ingest_paths, load_related
    from recsys.refresh import RefreshOptions, run_refresh

    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 2)
        clock = now

    inputs, related_csv = _corpus(settings, options, say)
    lap("corpus")
    say(f"ingest: {', '.join(str(p) for p in inputs)}")
    report = ingest_paths(settings, database, inputs)
    counts = report.counts()
    say("ingest: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    related = 0
    if related_csv is not None:
        related_report = load_related(settings, database, related_csv)
        related = related_report.pairs
        say(f"related pairs: {related} from {related_csv}")
    lap("ingest")
    with database.session() as session:
        usable = session.scalar(
            select(func.count())
            .select_from(Video)
            .where(Video.status.in_([VideoStatus.READY.value, VideoStatus.STALE.value]))
        )
    if not usable or usable < 4:
        raise DemoError(
            f"only {usable or 0} usable videos after ingest (see `recsys status`); "
            "the demo needs at least 4"
        )
    pairs = _pair_source(database)
    trained, reused, evaluation, verdict = _train(settings, database, options, pairs, say)
    model_version = _served_model(database, trained, verdict, say)
    lap("train")
    say(f"embed: refreshing embeddings of model {model_version}")
    summary = run_refresh(
        settings,
        database,
        RefreshOptions(model_version=model_version, workers=options.workers),
    )
    say(
        f"embed: {summary.embedded} embedded, {summary.cache_hits} from the feature cache, "
        f"{summary.failed} failed"
    )
    lap("embed")
    index_info = _index(settings, database, model_version, say)
    lap("index")
    examples, match, chance = _examples(settings, database, options.examples, options.seed)
    lap("examples")
    return DemoReport(
        home=str(settings.resolved_home),
        corpus=str(inputs[0]),
        ingest=counts,
        related_pairs=related,
        model_version=model_version,
        model_reused=reused,
        training_pairs=pairs,
        evaluation=evaluation,
        refresh=summary.as_dict(),
        index=index_info,
        examples=examples,
        category_match_at_10=match,
        chance_category_match=chance,
        seconds=seconds,
    )
