"""Real tiny catalogs for API tests: rows in the real database, vectors in the real embedding
store, an index built and published by the real ``index`` package."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from index.build import BuildOptions, build_from_vectors
from recsys.choices import GpuMode, IndexKind
from recsys.db import Database
from recsys.db.models import MediaRoot, MediaRootKind, ModelVersion, Video, VideoStatus
from recsys.events.hybrid import BlendSettings
from recsys.features import FeatureExtractor
from recsys.ids import VideoKey
from recsys.settings import Settings
from recsys.store import EmbeddingStore
from recsys.synth.writer import write_test_video

CATEGORIES = ("music", "sports", "news")
MODEL_VERSION = "apitest-model-1"


@dataclass
class TinyCatalog:
    settings: Settings
    model_version: str
    video_keys: dict[str, VideoKey]
    vectors: dict[str, np.ndarray]  # embedded videos only
    modalities: dict[str, dict[str, np.ndarray]]
    categories: dict[str, str]
    durations: dict[str, float]
    media_file: Path
    index_version: str = ""
    served: list[str] = field(default_factory=list)
    channels: dict[str, str | None] = field(default_factory=dict)
    duplicate_of: dict[str, str] = field(default_factory=dict)  # planted copy -> original

    def expected(
        self,
        query: np.ndarray,
        k: int,
        *,
        skip: set[str] = frozenset(),  # type: ignore[assignment]
        category: str | None = None,
        min_duration: float | None = None,
        max_duration: float | None = None,
    ) -> list[str]:
        """Exact top-k by cosine over served videos, with the same filters as the API."""
        candidates = [
            v
            for v in self.served
            if v not in skip
            and (category is None or self.categories[v] == category)
            and (min_duration is None or self.durations[v] >= min_duration)
            and (max_duration is None or self.durations[v] <= max_duration)
        ]
        scores = np.array([float(self.vectors[v] @ query) for v in candidates])
        order = np.argsort(-scores, kind="stable")[:k]
        return [candidates[i] for i in order]

    def blended(
        self, query: str, pairs: list[tuple[str, str, float]], blend: BlendSettings, k: int
    ) -> list[tuple[str, float]]:
        """Exact hybrid top-k over served videos, written out from the formula of
        recsys.events.hybrid: (1 - beta) * cos + beta * w / strongest * best cos."""
        served = set(self.served)
        partners = {
            (b if a == query else a): w for a, b, w in pairs if query in (a, b) and {a, b} <= served
        }
        d = len(partners)
        beta = blend.max_share * d / (d + blend.prior) if d else 0.0
        strongest = max(partners.values(), default=1.0)
        cosines = {
            v: max(float(self.vectors[v] @ self.vectors[query]), 0.0)
            for v in self.served
            if v != query
        }
        best = max(cosines.values())
        scored = []
        for video, cosine in cosines.items():
            c = partners.get(video, 0.0) / strongest
            scored.append((-((1 - beta) * cosine + beta * c * best), -c, -cosine, video))
        return [(video, -score) for score, *_, video in sorted(scored)[:k]]


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def write_thumbnail(settings: Settings, video_id: str, colour: tuple[int, int, int]) -> str:
    path = settings.thumbnails_dir / f"{video_id}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 36), colour).save(path, "JPEG")
    return path.name


def build_catalog(
    settings: Settings,
    database: Database,
    *,
    n: int = 60,
    dim: int = 16,
    seed: int = 0,
    model_version: str = MODEL_VERSION,
    index_factory: str | None = None,
    channel_of: Callable[[int], str | None] | None = None,
    planted: int = 0,
) -> TinyCatalog:
    """``n`` embedded videos in 3 clustered categories plus a failed, a deleted and a not yet
    embedded one; a flat index over the embedded ones is published.

    ``channel_of(i)`` names the channel of video i; ``planted`` adds near-duplicates
    ``dup000``, ... of v000, v001, ... (embedding within 0.01 of the original; an even one has
    the original's content hash, an odd one a hash of its own, as a re-encode has)."""
    rng = np.random.default_rng(seed)
    media_file = write_test_video(settings.resolved_home / "media" / "v000.mp4", seconds=1.0)
    centres = _unit(rng.normal(size=(len(CATEGORIES), dim)))
    originals = [f"v{i:03d}" for i in range(n)]
    copies = [f"dup{j:03d}" for j in range(planted)]
    duplicate_of = {copy: originals[j % n] for j, copy in enumerate(copies)}
    embedded = originals + copies
    source = [i for i in range(n)] + [j % n for j in range(planted)]
    categories = {v: CATEGORIES[source[i] % len(CATEGORIES)] for i, v in enumerate(embedded)}
    durations = {v: float(5 + source[i]) for i, v in enumerate(embedded)}
    base = _unit(
        np.stack([centres[i % len(CATEGORIES)] for i in range(n)])
        + 0.35 * rng.normal(size=(n, dim))
    )
    vectors = base
    if planted:
        copied = base[[j % n for j in range(planted)]]
        vectors = np.concatenate([base, _unit(copied + 0.01 * rng.normal(size=copied.shape))])
    count = len(embedded)
    visual = _unit(rng.normal(size=(count, 8)))
    audio = _unit(rng.normal(size=(count, 6)))
    channels = {
        v: (channel_of(source[i]) if channel_of is not None else None)
        for i, v in enumerate(embedded)
    }
    hashes = {
        v: f"hash-{duplicate_of[v]}" if v in duplicate_of and int(v[3:]) % 2 == 0 else f"hash-{v}"
        for v in embedded
    }
    with database.session() as session:
        # What ingest records for a scanned folder: the media routes serve only from roots.
        session.add(MediaRoot(path=str(media_file.parent.resolve()), kind=MediaRootKind.DIRECTORY))
        session.add(
            ModelVersion(
                version=model_version,
                fusion="late",
                extractor="content",
                extractor_version="content-1",
                dim=dim,
                path=str(settings.models_dir / model_version),
                is_active=True,
            )
        )
        rows = []
        for i, video_id in enumerate(embedded):
            rows.append(
                Video(
                    video_id=video_id,
                    uri=str(media_file) if i == 0 else f"/nonexistent/{video_id}.mp4",
                    content_hash=hashes[video_id],
                    duration_s=durations[video_id],
                    title=f"{categories[video_id].title()} clip {i}",
                    category=categories[video_id],
                    channel=channels[video_id],
                    tags=[categories[video_id]],
                    thumbnail_path=(
                        None
                        if i % 10 == 9
                        else write_thumbnail(settings, video_id, (40 * (i % 6), 90, 160))
                    ),
                    has_audio=True,
                )
            )
        rows.append(
            Video(
                video_id="failed1",
                uri="/nonexistent/failed1.mp4",
                title="Broken upload",
                status=VideoStatus.FAILED.value,
                status_reason="corrupt media: moov atom not found",
            )
        )
        rows.append(
            Video(video_id="deleted1", uri="/x/deleted1.mp4", status=VideoStatus.DELETED.value)
        )
        rows.append(Video(video_id="fresh1", uri="/x/fresh1.mp4", title="Just ingested"))
        session.add_all(rows)
        session.flush()
        video_keys = {row.video_id: VideoKey(row.id) for row in rows}
        embedded_keys = [video_keys[v] for v in embedded]
        EmbeddingStore(settings).write_batch(
            session,
            model_version,
            embedded_keys,
            [hashes[v] for v in embedded],
            "content-1",
            vectors,
            modalities={"visual": visual, "audio": audio},
        )
    catalog = TinyCatalog(
        settings=settings,
        model_version=model_version,
        video_keys=video_keys,
        vectors={v: vectors[i] for i, v in enumerate(embedded)},
        modalities={v: {"visual": visual[i], "audio": audio[i]} for i, v in enumerate(embedded)},
        categories=categories,
        durations=durations,
        media_file=media_file,
        served=list(embedded),
        channels=channels,
        duplicate_of=duplicate_of,
    )
    catalog.index_version = publish(settings, database, catalog, factory=index_factory)
    return catalog


def publish(
    settings: Settings, database: Database, catalog: TinyCatalog, factory: str | None = None
) -> str:
    """Build and publish an index (flat, or the faiss ``factory`` string) over the catalog's
    served vectors (the real build)."""
    video_keys = np.array([catalog.video_keys[v] for v in catalog.served], dtype=np.int64)
    vectors = np.stack([catalog.vectors[v] for v in catalog.served])
    result = build_from_vectors(
        settings,
        database,
        catalog.model_version,
        video_keys,
        vectors,
        BuildOptions(
            kind=IndexKind.FLAT if factory is None else IndexKind.AUTO,
            factory=factory,
            gpu=GpuMode.OFF,
            queries=20,
            min_recall=0.9,
        ),
    )
    return result.version


@dataclass
class ModelCatalog:
    """Videos embedded for real (decode → content features → a seeded, untrained model)."""

    settings: Settings
    model_version: str
    files: dict[str, Path]
    index_version: str


def _pattern_frames(seed: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(3,))
    stripes = rng.integers(2, 9)

    def make(i: int, _t: float) -> np.ndarray:
        img = np.zeros((48, 64, 3), dtype=np.uint8)
        img[...] = (base + 7 * i) % 256
        img[:, :: int(stripes)] = 255 - img[:, :: int(stripes)]
        return img

    return make


def save_seeded_model(
    settings: Settings, database: Database, extractor: FeatureExtractor, features: list
) -> str:
    """A seeded, untrained 16-d fusion model over ``features``' dimensions, saved and active."""
    import torch

    from recsys.models.config import ModelConfig
    from recsys.models.fusion import FusionModel
    from recsys.models.inputs import input_dims
    from recsys.models.registry import save_model

    visual_dim, audio_dim = input_dims(features)
    torch.manual_seed(0)
    config = ModelConfig(
        extractor=extractor.name,
        extractor_version=extractor.version,
        dim=16,
        hidden=32,
        visual_dim=visual_dim,
        audio_dim=audio_dim,
    )
    return save_model(settings, database, FusionModel(config), activate=True)


def build_model_catalog(settings: Settings, database: Database, *, n: int = 6) -> ModelCatalog:
    """``n`` tiny real videos embedded by a real (seeded, untrained) fusion model."""

    from recsys import media
    from recsys.features import get_extractor
    from recsys.models.registry import load_embedder

    extractor = get_extractor("content")
    files: dict[str, Path] = {}
    features = []
    for i in range(n):
        video_id = f"clip{i}"
        path = write_test_video(
            settings.resolved_home / "media" / f"{video_id}.mp4",
            seconds=1.0,
            frame_fn=_pattern_frames(i),
            audio=i % 2 == 0,
        )
        files[video_id] = path
        decoded = media.decode_video(
            path,
            num_frames=settings.frames_per_video,
            size=settings.frame_size,
            sample_rate=settings.audio_sample_rate,
        )
        features.append(extractor.extract(decoded))
    version = save_seeded_model(settings, database, extractor, features)
    vectors, modalities = load_embedder(settings, database, version).embed(features)
    with database.session() as session:
        rows = [
            Video(
                video_id=video_id,
                uri=str(path),
                content_hash=f"hash-{video_id}",
                title=f"Clip {video_id}",
                category="clips",
                duration_s=1.0,
            )
            for video_id, path in files.items()
        ]
        session.add_all(rows)
        session.flush()
        video_keys = [VideoKey(row.id) for row in rows]
        EmbeddingStore(settings).write_batch(
            session,
            version,
            video_keys,
            [f"hash-{v}" for v in files],
            extractor.version,
            vectors,
            modalities=modalities,
        )
    result = build_from_vectors(
        settings,
        database,
        version,
        np.array(video_keys, dtype=np.int64),
        vectors,
        BuildOptions(kind=IndexKind.FLAT, gpu=GpuMode.OFF, queries=n, min_recall=0.9),
    )
    return ModelCatalog(settings, version, files, result.version)
