"""``GET /similar/{video_id}`` is answered without FastAPI's response validation
(:mod:`api.direct`): every body it serves must be exactly what the documented response model
makes of it (the same fields, in order, with the same values), and it must refuse what the
documented route refused (methods, ids)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.schemas import SimilarResponse
from tests.serving.catalog import TinyCatalog

QUERIES = [
    {},
    {"k": 3},
    {"k": 5, "explain": "true"},
    {"k": 5, "explain": "moments"},
    {"k": 8, "diversity": 0.5, "max_per_channel": 2},
    {"k": 4, "category": "no-such-category"},
    {"k": 4, "channel": "no-such-channel", "dedup": "false"},
    {"k": 4, "min_duration": 6, "offset": 3},
    {"k": 4, "min_score": 0.99},
    {"k": 4, "exclude": ["v002", "v003"], "source": "content"},
]


@pytest.mark.parametrize("params", QUERIES)
def test_served_bodies_are_what_the_response_model_writes(
    client: TestClient, catalog: TinyCatalog, params: dict[str, Any]
) -> None:
    response = client.get("/similar/v001", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    model = SimilarResponse.model_validate_json(response.content)
    assert model.model_dump_json().encode() == response.content
    if params.get("explain") == "moments":
        assert all(item.moment is not None for item in model.results)


def test_the_next_page_is_served_the_same_way(client: TestClient, catalog: TinyCatalog) -> None:
    first = client.get("/similar/v001", params={"k": 4}).json()
    token = first["next_page_token"]
    response = client.get("/similar/v001", params={"k": 4, "page_token": token})
    assert response.status_code == 200
    assert SimilarResponse.model_validate_json(response.content).model_dump_json().encode() == (
        response.content
    )


def test_other_methods_and_bad_ids_are_refused_as_by_the_documented_route(
    client: TestClient, catalog: TinyCatalog
) -> None:
    for method in ("POST", "PUT", "DELETE", "HEAD"):
        refused = client.request(method, "/similar/v001")
        assert refused.status_code == 405 and refused.headers["allow"] == "GET", method
    # /similar/upload is the upload route's path: its Allow header, not this route's
    assert client.delete("/similar/upload").headers["allow"] == "POST"
    bad = client.get("/similar/a//b")
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"][:2] == ["path", "video_id"]
    unknown = client.get("/similar/v001", params={"kk": 3})
    assert unknown.status_code == 422 and "kk" in unknown.json()["detail"]


def test_the_metrics_label_the_route_by_its_template(
    client: TestClient, catalog: TinyCatalog
) -> None:
    assert client.get("/similar/v001").status_code == 200
    metrics = client.get("/metrics").text
    assert 'route="/similar/{video_id}"' in metrics
