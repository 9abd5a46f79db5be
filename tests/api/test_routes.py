"""Every other route and its error statuses, through HTTP."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import update

from recsys.db import Database
from recsys.db.models import Video
from tests.api.conftest import ADMIN_TOKEN
from tests.serving.catalog import TinyCatalog


def ids_of(body: dict) -> list[str]:
    return [item["video_id"] for item in body["results"]]


# ------------------------------------------------------------------ POST /similar
def test_recommend_by_examples(client: TestClient, catalog: TinyCatalog) -> None:
    positive, negative = ["v003", "v006"], ["v001"]
    response = client.post(
        "/similar",
        json={"positive": positive, "negative": negative, "negative_weight": 0.5, "k": 6},
    )
    assert response.status_code == 200, response.text
    mean = np.mean([catalog.vectors[v] for v in positive], axis=0)
    query = mean - 0.5 * catalog.vectors["v001"]
    query /= np.linalg.norm(query)
    expected = catalog.expected(query, 6, skip=set(positive) | set(negative))
    assert ids_of(response.json()) == expected
    assert response.json()["query"] == positive


def test_examples_with_filters_and_explain(client: TestClient, catalog: TinyCatalog) -> None:
    body = client.post(
        "/similar",
        json={"positive": ["v000"], "k": 3, "category": "sports", "explain": True},
    ).json()
    assert ids_of(body) == catalog.expected(
        catalog.vectors["v000"], 3, skip={"v000"}, category="sports"
    )
    assert all(set(item["modalities"]) == {"visual", "audio"} for item in body["results"])


def test_examples_errors(client: TestClient) -> None:
    assert client.post("/similar", json={"positive": ["nope"]}).status_code == 404
    conflict = client.post("/similar", json={"positive": ["v001", "failed1"]})
    assert conflict.status_code == 409 and conflict.json()["video_id"] == "failed1"
    for body in (
        {"positive": []},
        {"positive": ["v001"], "negative": ["v001"]},
        {"positive": ["v001"], "k": 0},
        {"positive": ["v001"], "min_duration": 9, "max_duration": 1},
        {"negative": ["v001"]},
    ):
        assert client.post("/similar", json=body).status_code == 422, body
    assert client.post("/similar", content=b"{not json").status_code == 422
    cancel = client.post(
        "/similar", json={"positive": ["v001"], "negative": ["v001x"]}
    )  # unknown negative
    assert cancel.status_code == 404


def test_negative_weight_zero_ignores_negatives_but_still_excludes_them(
    client: TestClient, catalog: TinyCatalog
) -> None:
    body = client.post(
        "/similar",
        json={"positive": ["v001", "v002"], "negative": ["v003"], "negative_weight": 0.0, "k": 5},
    ).json()
    query = catalog.vectors["v001"] + catalog.vectors["v002"]
    query /= np.linalg.norm(query)
    assert ids_of(body) == catalog.expected(query, 5, skip={"v001", "v002", "v003"})


# ------------------------------------------------------------------ GET /videos
def test_video_detail(client: TestClient, catalog: TinyCatalog) -> None:
    body = client.get("/videos/v000").json()
    assert body["video_id"] == "v000"
    assert body["served"] is True
    assert body["index_version"] == catalog.index_version
    assert body["media_url"] == "/media/v000"
    assert body["thumbnail_url"] == "/thumbnails/v000.jpg"
    failed = client.get("/videos/failed1").json()
    assert failed["served"] is False and failed["status"] == "failed"
    assert client.get("/videos/fresh1").json()["served"] is False
    missing = client.get("/videos/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "video_not_found"
    assert client.get("/videos/x%7Fy").status_code == 422


# ------------------------------------------------------------------ media and thumbnails
def test_media_streams_with_range_requests(client: TestClient, catalog: TinyCatalog) -> None:
    catalog.settings.media_roots = [catalog.media_file.parent]  # files are served from roots
    data = catalog.media_file.read_bytes()
    full = client.get("/media/v000")
    assert full.status_code == 200 and full.content == data
    assert full.headers["accept-ranges"] == "bytes"
    part = client.get("/media/v000", headers={"Range": "bytes=10-99"})
    assert part.status_code == 206
    assert part.content == data[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(data)}"
    assert client.get("/media/v001").status_code == 404  # file not on this server
    assert client.get("/media/nope").status_code == 404
    assert client.get("/media/deleted1").status_code == 404


def test_thumbnails(client: TestClient) -> None:
    ok = client.get("/thumbnails/v001.jpg")
    assert ok.status_code == 200 and ok.content[:2] == b"\xff\xd8"
    assert client.get("/thumbnails/v009.jpg").status_code == 404  # none made
    assert client.get("/thumbnails/nope.jpg").status_code == 404


# ------------------------------------------------------------------ health, metrics
def test_health_and_readiness(client: TestClient, catalog: TinyCatalog) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["index_version"] == catalog.index_version
    assert ready.json()["vectors"] == len(catalog.served)


def test_metrics_count_requests_and_show_the_index(
    client: TestClient, catalog: TinyCatalog
) -> None:
    client.get("/similar/v001")
    client.get("/similar/nope")
    text = client.get("/metrics").text
    assert 'recsys_http_requests_total{method="GET",route="/similar/{video_id}",status="200"}' in (
        text
    )
    assert 'route="/similar/{video_id}",status="404"' in text
    assert (
        'recsys_http_request_duration_seconds_bucket{le="0.005",route="/similar/{video_id}"}'
        in (text)
    )
    assert (
        f'recsys_index_info{{index_version="{catalog.index_version}",'
        f'model_version="{catalog.model_version}"}} 1.0'
    ) in text
    assert f"recsys_index_vectors {float(len(catalog.served))}" in text


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/similar/{video_id}" in schema["paths"]
    assert "/admin/reload" in schema["paths"]


# ------------------------------------------------------------------ admin
def test_admin_reload_needs_the_token(client: TestClient, catalog: TinyCatalog) -> None:
    assert client.post("/admin/reload").status_code == 401
    wrong = client.post("/admin/reload", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert client.post("/admin/reload", headers={"Authorization": ADMIN_TOKEN}).status_code == 401
    ok = client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert ok.status_code == 200
    assert ok.json()["changed"] is False
    assert ok.json()["index_version"] == catalog.index_version
    forced = client.post(
        "/admin/reload",
        params={"force": "true"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert forced.json()["changed"] is True
    invalid = client.post(
        "/admin/reload",
        params={"force": "maybe"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert invalid.status_code == 422


def test_admin_routes_are_off_without_a_token(
    catalog: TinyCatalog, database: Database, api_options
) -> None:
    from api.factory import create_app

    settings = catalog.settings.model_copy(update={"admin_token": None})
    with TestClient(create_app(settings, options=api_options, database=database)) as client:
        assert client.post("/admin/reload").status_code == 404
        assert "/admin/reload" not in client.get("/openapi.json").json()["paths"]


# ------------------------------------------------------------------ catalog changes
def test_deleting_a_video_takes_effect_without_a_new_index(
    client: TestClient, catalog: TinyCatalog, database: Database
) -> None:
    top = ids_of(client.get("/similar/v010", params={"k": 3}).json())
    with database.session() as session:
        session.execute(update(Video).where(Video.video_id == top[0]).values(status="deleted"))
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        returned = ids_of(client.get("/similar/v010", params={"k": 3}).json())
        if top[0] not in returned:
            break
        time.sleep(0.05)
    assert top[0] not in returned
    assert returned == catalog.expected(catalog.vectors["v010"], 3, skip={"v010", top[0]})
    gone = client.get(f"/similar/{top[0]}")
    assert gone.status_code == 409 and gone.json()["status"] == "deleted"


def test_a_video_added_after_the_index_is_409_not_404(
    client: TestClient, database: Database
) -> None:
    with database.session() as session:
        session.add(Video(video_id="brand-new", uri="/x/new.mp4", title="new"))
    response = client.get("/similar/brand-new")
    assert response.status_code == 409
    assert response.json()["status"] == "ready"
