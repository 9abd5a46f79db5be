"""What /similar accepts: unknown parameters are refused by name, the new parameters (channel,
re-ranking, pages) reach the plan, and a stale page token is a 409."""

from __future__ import annotations

from fastapi.testclient import TestClient

from recsys.db import Database
from recsys.settings import Settings
from tests.api.conftest import ADMIN_TOKEN
from tests.serving.catalog import TinyCatalog, publish


def ids_of(body: dict) -> list[str]:  # type: ignore[type-arg]
    return [item["video_id"] for item in body["results"]]


def test_unknown_parameters_are_422_naming_them(client: TestClient) -> None:
    for params, name in (({"categroy": "music"}, "categroy"), ({"kk": 3, "k": 2}, "kk")):
        answer = client.get("/similar/v001", params=params)
        assert answer.status_code == 422, answer.text
        body = answer.json()
        assert body["error"] == "invalid_request" and name in body["detail"]
        assert any(name in error["loc"] for error in body["errors"])
    body = client.post("/similar", json={"positive": ["v001"], "kk": 3})
    assert body.status_code == 422 and "kk" in body.json()["detail"]
    assert client.get("/similar/v001", params={"k": 3}).status_code == 200


def test_an_unknown_category_says_so_and_channels_are_shown(client: TestClient) -> None:
    body = client.get("/similar/v001", params={"category": "dgo"}).json()
    assert body["results"] == [] and body["unknown_category"] is True
    plain = client.get("/similar/v001").json()
    assert plain["unknown_category"] is False and plain["duplicates_removed"] == 0
    assert all("channel" in item for item in plain["results"])
    assert client.get("/similar/v001", params={"channel": "nobody"}).json()["unknown_channel"]


def test_reranking_and_pages_over_http(client: TestClient) -> None:
    whole = client.get("/similar/v001", params={"k": 12, "diversity": 0.5}).json()
    assert whole["pool"] == 100 and len(whole["results"]) == 12
    first = client.get("/similar/v001", params={"k": 6, "diversity": 0.5}).json()
    second = client.get(
        "/similar/v001",
        params={"k": 6, "diversity": 0.5, "page_token": first["next_page_token"]},
    ).json()
    assert ids_of(first) + ids_of(second) == ids_of(whole) and second["offset"] == 6
    other_query = client.get(
        "/similar/v002", params={"k": 6, "page_token": first["next_page_token"]}
    )
    assert other_query.status_code == 422 and "another query" in other_query.json()["detail"]
    assert client.get("/similar/v001", params={"diversity": 1.5}).status_code == 422
    assert client.get("/similar/v001", params={"max_per_channel": 0}).status_code == 422


def test_a_page_token_of_another_index_version_is_409(
    client: TestClient, catalog: TinyCatalog, settings: Settings, database: Database
) -> None:
    token = client.get("/similar/v001", params={"k": 4}).json()["next_page_token"]
    publish(settings, database, catalog)
    reload = client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert reload.status_code == 200, reload.text
    stale = client.get("/similar/v001", params={"k": 4, "page_token": token})
    assert stale.status_code == 409, stale.text
    assert stale.json()["error"] == "stale_page_token"


def test_the_page_exposes_the_list_controls(client: TestClient) -> None:
    page = client.get(
        "/ui/videos/v001",
        params={"k": 5, "category": "", "channel": "", "diversity": 0.3, "max_per_channel": ""},
    )
    assert page.status_code == 200, page.text
    for name in ("k", "category", "channel", "diversity", "max_per_channel"):
        assert f'name="{name}"' in page.text
    assert page.text.count('class="card"') == 5
    unknown = client.get("/ui/videos/v001", params={"category": "dgo"})
    assert 'id="unknown-category"' in unknown.text


def test_explain_moments_is_a_parameter(client: TestClient) -> None:
    # the tiny catalog's vectors were written directly: no segment features are cached
    body = client.get("/similar/v001", params={"k": 3, "explain": "moments"}).json()
    assert all(item["moment"]["missing"] for item in body["results"])
    assert all(item["modalities"] is not None for item in body["results"])
    assert (
        client.get("/similar/v001", params={"explain": "true"}).json()["results"][0]["moment"]
        is None
    )
    assert client.get("/similar/v001", params={"explain": "moment"}).status_code == 422
