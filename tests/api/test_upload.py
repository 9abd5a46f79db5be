"""POST /similar/upload: a file embedded on the fly with the served model, and its rejections."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.config import ApiOptions
from api.factory import create_app
from recsys.db import Database
from recsys.features import VideoFeatures
from recsys.media import probe
from recsys.settings import Settings
from recsys.synth.writer import write_test_video
from recsys.tags import load_tag_model, predict_videos
from recsys.tags.model import tags_dir
from tests.serving.catalog import ModelCatalog, build_model_catalog

UPLOAD_LIMIT = 200_000


@pytest.fixture
def model_catalog(
    sqlite_settings: Settings, sqlite_database: Database
) -> tuple[ModelCatalog, Database]:
    sqlite_settings.upload_max_bytes = UPLOAD_LIMIT
    return build_model_catalog(sqlite_settings, sqlite_database), sqlite_database


@pytest.fixture
def upload_client(model_catalog: tuple[ModelCatalog, Database]) -> Iterator[TestClient]:
    catalog, database = model_catalog
    app = create_app(catalog.settings, options=ApiOptions(), database=database)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def upload(
    client: TestClient,
    path: Path,
    *,
    name: str | None = None,
    content_type="video/mp4",
    **params: str | int | float,
):  # type: ignore[no-untyped-def]
    with path.open("rb") as handle:
        return client.post(
            "/similar/upload",
            params=params,
            files={"file": (name or path.name, handle, content_type)},
        )


def test_uploading_a_catalog_video_finds_itself_first(
    upload_client: TestClient, model_catalog: tuple[ModelCatalog, Database]
) -> None:
    catalog, _ = model_catalog
    response = upload(upload_client, catalog.files["clip3"], k=3, explain="true")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == catalog.model_version
    assert body["index_version"] == catalog.index_version
    assert body["query"] == []
    first = body["results"][0]
    assert first["video_id"] == "clip3"
    assert first["score"] == pytest.approx(1.0, abs=1e-4)
    assert first["modalities"]["visual"] == pytest.approx(1.0, abs=1e-4)
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_upload_filters_apply(
    upload_client: TestClient, model_catalog: tuple[ModelCatalog, Database]
) -> None:
    catalog, _ = model_catalog
    body = upload(
        upload_client, catalog.files["clip1"], k=5, exclude="clip1", category="clips"
    ).json()
    assert "clip1" not in [r["video_id"] for r in body["results"]]
    assert len(body["results"]) == 5
    bad = upload(upload_client, catalog.files["clip1"], min_duration=30, max_duration=10)
    assert bad.status_code == 422 and "must not exceed" in bad.json()["detail"]
    too_many = upload(upload_client, catalog.files["clip1"], k=100_000)
    assert too_many.status_code == 422 and "k" in too_many.json()["detail"]


def test_upload_too_large_is_413(upload_client: TestClient, tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    big.write_bytes(np.random.default_rng(0).bytes(UPLOAD_LIMIT + 100_000))
    response = upload(upload_client, big)
    assert response.status_code == 413
    assert str(UPLOAD_LIMIT) in response.json()["detail"]
    # Just over the exact limit (inside the multipart slack) is caught after streaming.
    edge = tmp_path / "edge.mp4"
    edge.write_bytes(b"\0" * (UPLOAD_LIMIT + 10))
    assert upload(upload_client, edge).status_code == 413


def test_chunked_upload_over_the_limit_is_413(upload_client: TestClient) -> None:
    boundary = "xyzboundary"

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="a.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
        ).encode()
        for _ in range(40):
            yield b"\0" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    response = upload_client.post(
        "/similar/upload",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413


def test_not_a_video_type_is_415(
    upload_client: TestClient, model_catalog: tuple[ModelCatalog, Database], tmp_path: Path
) -> None:
    catalog, _ = model_catalog
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert upload(upload_client, text, content_type="text/plain").status_code == 415
    wrong_type = upload(upload_client, catalog.files["clip0"], content_type="image/png")
    assert wrong_type.status_code == 415
    assert upload(upload_client, catalog.files["clip0"], name="clip.exe").status_code == 415


def test_unreadable_media_is_422_with_the_reason(upload_client: TestClient, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(1).bytes(5000))
    response = upload(upload_client, junk)
    assert response.status_code == 422
    assert response.json()["error"] == "media_rejected"
    audio_only = write_test_video(tmp_path / "audio.mp4", video=False)
    no_video = upload(upload_client, audio_only)
    assert no_video.status_code == 422
    assert "video stream" in no_video.json()["detail"]
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert upload(upload_client, empty).status_code == 422
    missing_file = upload_client.post("/similar/upload")
    assert missing_file.status_code == 422


def test_decode_time_limit_is_422_with_the_reason(
    model_catalog: tuple[ModelCatalog, Database],
) -> None:
    catalog, database = model_catalog
    slow = catalog.settings.model_copy(update={"decode_timeout_s": 1e-4})
    with TestClient(create_app(slow, database=database)) as client:
        response = upload(client, catalog.files["clip2"])
    assert response.status_code == 422, response.text
    assert "longer than" in response.json()["detail"]


def test_model_files_missing_is_503(
    model_catalog: tuple[ModelCatalog, Database],
) -> None:
    catalog, database = model_catalog
    with TestClient(create_app(catalog.settings, database=database)) as client:
        shutil.rmtree(catalog.settings.models_dir / catalog.model_version)
        response = upload(client, catalog.files["clip2"])
        assert response.status_code == 503
        assert catalog.model_version in response.json()["detail"]


def test_queued_uploads_hold_no_shared_thread_and_a_full_queue_is_503_at_once(
    model_catalog: tuple[ModelCatalog, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    import anyio.to_thread

    from recsys import stage_a

    catalog, database = model_catalog
    release = threading.Event()
    decoding = threading.Semaphore(0)
    real_extract = stage_a.extract_features

    def stuck_decode(path, spec):  # type: ignore[no-untyped-def]
        decoding.release()
        release.wait(30)  # a decode that takes its time
        return real_extract(path, spec)

    monkeypatch.setattr(stage_a, "extract_features", stuck_decode)
    options = ApiOptions(upload_concurrency=1, upload_queue=2)
    app = create_app(catalog.settings, options=options, database=database)
    clip = catalog.files["clip1"]
    with TestClient(app, raise_server_exceptions=False) as client, ThreadPoolExecutor(6) as pool:

        def shrink_shared_pool() -> None:  # 3 threads: what 3 waiting uploads used to take
            anyio.to_thread.current_default_thread_limiter().total_tokens = 3

        client.portal.call(shrink_shared_pool)  # type: ignore[union-attr]
        try:
            uploads = [pool.submit(upload, client, clip, k=3) for _ in range(3)]
            assert decoding.acquire(timeout=30), "the first upload never started decoding"
            deadline = time.monotonic() + 10
            while app.state.uploads.admitted < 3:  # the other two wait in the queue
                assert time.monotonic() < deadline
                time.sleep(0.01)
            # While one upload decodes and two wait, everything else is answered at once.
            queries: tuple[tuple[str, dict[str, str | int]], ...] = (
                ("/readyz", {}),
                ("/similar/clip2", {"k": 2, "category": "clips"}),
                ("/", {}),
            )
            for path, params in queries:
                start = time.perf_counter()
                response = pool.submit(client.get, path, params=params).result(timeout=5)
                assert response.status_code == 200, (path, response.text)
                assert time.perf_counter() - start < 2.0, path
            # The queue is full: the next upload is refused at once.
            start = time.perf_counter()
            refused = pool.submit(upload, client, clip).result(timeout=5)
            assert time.perf_counter() - start < 2.0
            assert refused.status_code == 503, refused.text
            assert refused.headers["Retry-After"]
            assert refused.json()["error"] == "overloaded"
            assert "RECSYS_API_UPLOAD_QUEUE" in refused.json()["detail"]
            assert not decoding.acquire(timeout=0.2), "only one upload decodes at a time"
        finally:
            release.set()
        answers = [f.result(timeout=60) for f in uploads]
        assert [a.status_code for a in answers] == [200, 200, 200], answers[0].text
        assert all(a.json()["results"][0]["video_id"] == "clip1" for a in answers)
        assert app.state.uploads.admitted == 0


# ------------------------------------------------------------------ tags of an upload
def _save_sound_tags_model(
    catalog: ModelCatalog,
    database: Database | None = None,
    embeddings_of: str | None = None,
    extractor_spec: str = "content",
) -> tuple[str, dict[str, VideoFeatures]]:
    """A tags model trained on noisy copies of the catalog's clips: the clips with a sound
    track are ``sound``, the others ``silent``. It reads the stage-A features of
    ``extractor_spec`` (the served model's: ``content``), or with ``embeddings_of`` the served
    model's embeddings, said to be that model's. Also the clips' own features."""
    from recsys.features import get_extractor
    from recsys.models.registry import load_embedder
    from recsys.stage_a import FeatureSpec, extract_features
    from recsys.tags import Source, save_tag_model
    from recsys.tags.fit import fit_tag_model
    from recsys.tags.labels import LabelledVideos

    settings = catalog.settings
    version = str(get_extractor(extractor_spec, settings=settings).version)
    spec = FeatureSpec.for_model(settings, extractor_spec, version)
    rng = np.random.default_rng(7)
    features: list[VideoFeatures] = []
    categories: list[str | None] = []
    clips = {}
    for video_id, path in catalog.files.items():
        clip = clips[video_id] = extract_features(str(path), spec)[0]
        for _ in range(4):
            visual = clip.visual_seq + rng.normal(scale=0.01, size=clip.visual_seq.shape)
            audio = None
            if clip.audio_seq is not None:
                audio = clip.audio_seq + rng.normal(scale=0.01, size=clip.audio_seq.shape)
            features.append(
                VideoFeatures.from_sequences(
                    clip.extractor,
                    clip.extractor_version,
                    visual.astype(np.float32),
                    None if audio is None else audio.astype(np.float32),
                )
            )
            categories.append("silent" if clip.audio is None else "sound")
    data = LabelledVideos(features, categories, [[] for _ in categories])
    source = Source.FEATURES
    if embeddings_of is not None:
        assert database is not None
        embedder = load_embedder(settings, database, catalog.model_version)
        data.embeddings = np.asarray(embedder.embed(features)[0], np.float32)
        source = Source.EMBEDDING
    model = fit_tag_model(
        data,
        extractor=extractor_spec,
        extractor_version=version,
        model_version=embeddings_of,
        sources=(source,),
    )
    return save_tag_model(settings, model), clips


def test_an_upload_asks_for_its_tags(
    upload_client: TestClient, model_catalog: tuple[ModelCatalog, Database]
) -> None:
    catalog, _ = model_catalog
    clip = catalog.files["clip0"]  # has a sound track
    # No tags model yet: the answer says so, and the neighbours are still there.
    untrained = upload(upload_client, clip, k=3, tags="true")
    assert untrained.status_code == 200, untrained.text
    body = untrained.json()
    assert body["results"][0]["video_id"] == "clip0"
    assert body["tags"]["predicted"] == [] and body["tags"]["tags_model"] is None
    assert "no tags model" in body["tags"]["unavailable"]
    assert "recsys tags train" in body["tags"]["unavailable"]

    version, clips = _save_sound_tags_model(catalog)
    model = load_tag_model(catalog.settings)

    for video_id, category in (("clip0", "sound"), ("clip1", "silent")):
        answer = upload(upload_client, catalog.files[video_id], k=3, tags="true")
        assert answer.status_code == 200, answer.text
        tags = answer.json()["tags"]
        assert tags["unavailable"] is None and tags["tags_model"] == version
        best = tags["predicted"][0]
        assert (best["tag"], best["kind"], best["tags_model"]) == (category, "category", version)
        assert best["confidence"] >= 0.5
        # What the catalog's tagging says of the same content: spans in seconds of the file.
        duration = probe(catalog.files[video_id]).duration_s
        assert duration == pytest.approx(1.0, abs=0.1)
        expected = predict_videos(model, [clips[video_id]], [duration])[0]
        assert tags["predicted"] == [
            p.as_dict() | {"tags_model": version} for p in expected.predictions
        ]
        assert tags["segment_labels"] == expected.segment_labels
        spans = [span for p in tags["predicted"] for span in p["spans"]]
        assert spans and all(0.0 <= s["start_s"] < s["end_s"] <= duration for s in spans)
    # Not asked: no tags, and no tags model is read.
    assert upload(upload_client, clip, k=3).json()["tags"] is None
    refused = upload(upload_client, clip, tags="maybe")
    assert refused.status_code == 422 and "tags" in refused.json()["detail"]


def test_an_unusable_tags_model_is_said_not_a_500(
    upload_client: TestClient, model_catalog: tuple[ModelCatalog, Database]
) -> None:
    catalog, _ = model_catalog
    version, _ = _save_sound_tags_model(catalog)

    (tags_dir(catalog.settings) / version / "model.safetensors").write_bytes(b"not a model")
    answer = upload(upload_client, catalog.files["clip0"], k=3, tags="true")
    assert answer.status_code == 200, answer.text
    tags = answer.json()["tags"]
    assert tags["predicted"] == [] and "unreadable" in tags["unavailable"]
    assert str(catalog.settings.resolved_home) not in tags["unavailable"]  # no server paths


def test_an_embedding_tags_model_tags_uploads_of_its_own_model_only(
    upload_client: TestClient, model_catalog: tuple[ModelCatalog, Database]
) -> None:
    """A tags model that reads embeddings reads the upload's, when they are its model's."""
    catalog, database = model_catalog
    version, _ = _save_sound_tags_model(catalog, database, embeddings_of=catalog.model_version)
    for video_id, category in (("clip2", "sound"), ("clip3", "silent")):
        tags = upload(upload_client, catalog.files[video_id], k=3, tags="true").json()["tags"]
        assert tags["unavailable"] is None and tags["tags_model"] == version
        assert tags["predicted"][0]["tag"] == category

    other, _ = _save_sound_tags_model(catalog, database, embeddings_of="model-elsewhere")
    tags = upload(upload_client, catalog.files["clip2"], k=3, tags="true").json()["tags"]
    assert tags["predicted"] == [] and tags["tags_model"] is None
    assert "model-elsewhere" in tags["unavailable"]
    assert catalog.model_version in tags["unavailable"]


def test_a_tags_model_of_another_extractor_reads_features_of_its_own(
    upload_client: TestClient, model_catalog: tuple[ModelCatalog, Database]
) -> None:
    """The served model reads ``content`` features; a tags model trained on another stage-A
    spec gets the upload's features of that spec (extracted again), not the served model's."""
    catalog, _ = model_catalog
    spec = "visual=content,audio=content"
    version, clips = _save_sound_tags_model(catalog, extractor_spec=spec)
    model = load_tag_model(catalog.settings)
    assert clips["clip0"].extractor != "content"  # another extractor than the served model's
    for video_id, category in (("clip4", "sound"), ("clip5", "silent")):
        tags = upload(upload_client, catalog.files[video_id], k=3, tags="true").json()["tags"]
        assert tags["unavailable"] is None and tags["tags_model"] == version
        assert tags["predicted"][0]["tag"] == category
        duration = probe(catalog.files[video_id]).duration_s
        expected = predict_videos(model, [clips[video_id]], [duration])[0]
        assert tags["predicted"] == [
            p.as_dict() | {"tags_model": version} for p in expected.predictions
        ]
