"""GET /similar/{video_id}: exact neighbours, filters, deeper search, explanations, errors."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from api.config import ApiOptions
from api.factory import create_app
from recsys.db import Database
from recsys.settings import Settings
from tests.serving.catalog import TinyCatalog, build_catalog


def ids_of(body: dict) -> list[str]:
    return [item["video_id"] for item in body["results"]]


def test_returns_exact_neighbours_best_first_with_metadata(
    client: TestClient, catalog: TinyCatalog
) -> None:
    response = client.get("/similar/v004", params={"k": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == catalog.model_version
    assert body["index_version"] == catalog.index_version
    assert body["query"] == ["v004"]
    expected = catalog.expected(catalog.vectors["v004"], 5, skip={"v004"})
    assert ids_of(body) == expected
    scores = [item["score"] for item in body["results"]]
    assert scores == sorted(scores, reverse=True)
    first = body["results"][0]
    assert np.isclose(
        first["score"], catalog.vectors[expected[0]] @ catalog.vectors["v004"], atol=1e-5
    )
    assert first["category"] == catalog.categories[expected[0]]
    assert first["duration"] == catalog.durations[expected[0]]
    assert first["title"].endswith(f"clip {int(expected[0][1:])}")
    assert all(item["modalities"] is None for item in body["results"])


def test_thumbnail_url_only_where_a_thumbnail_exists(
    client: TestClient, catalog: TinyCatalog
) -> None:
    body = client.get("/similar/v000", params={"k": 59}).json()
    urls = {item["video_id"]: item["thumbnail_url"] for item in body["results"]}
    assert urls["v009"] is None
    assert urls["v001"] == "/thumbnails/v001.jpg"
    assert client.get(urls["v001"]).headers["content-type"] == "image/jpeg"


def test_never_returns_itself_failed_deleted_or_unembedded(
    client: TestClient, catalog: TinyCatalog
) -> None:
    body = client.get("/similar/v001", params={"k": 1000}).json()
    returned = ids_of(body)
    assert "v001" not in returned
    assert not {"failed1", "deleted1", "fresh1"} & set(returned)
    assert sorted(returned) == sorted(set(catalog.served) - {"v001"})
    assert body["exhausted"] is True


def test_category_and_duration_filters_search_deeper(
    client: TestClient, catalog: TinyCatalog
) -> None:
    params = {"k": 4, "category": "news", "min_duration": 20, "max_duration": 50}
    body = client.get("/similar/v000", params=params).json()
    expected = catalog.expected(
        catalog.vectors["v000"],
        4,
        skip={"v000"},
        category="news",
        min_duration=20,
        max_duration=50,
    )
    assert ids_of(body) == expected
    assert len(expected) == 4
    assert all(item["category"] == "news" for item in body["results"])
    assert all(20 <= item["duration"] <= 50 for item in body["results"])
    assert body["searched"] > 4 + 1  # the first, shallow search did not suffice


def test_filters_that_match_few_videos_return_what_exists(
    client: TestClient, catalog: TinyCatalog
) -> None:
    body = client.get(
        "/similar/v000", params={"k": 10, "category": "music", "max_duration": 12}
    ).json()
    assert ids_of(body) == catalog.expected(
        catalog.vectors["v000"], 10, skip={"v000"}, category="music", max_duration=12
    )
    assert body["exhausted"] is True
    unknown = client.get("/similar/v000", params={"category": "no-such-category"}).json()
    assert unknown["results"] == [] and unknown["exhausted"] is True


def test_filters_widen_an_ivf_search_whose_probed_lists_run_dry(
    settings: Settings, database: Database, api_options: ApiOptions
) -> None:
    # One inverted list per category cluster, probing one: a "news" filter on a "music" query
    # finds nothing in the probed list, so the search must widen, not report "exhausted".
    catalog = build_catalog(settings, database, index_factory="IVF3,Flat")
    app = create_app(settings, options=api_options, database=database)
    with TestClient(app, raise_server_exceptions=False) as client:
        plain = client.get("/similar/v000", params={"k": 3})
        assert plain.status_code == 200, plain.text
        for category in ("news", "sports"):
            body = client.get("/similar/v000", params={"k": 5, "category": category}).json()
            assert ids_of(body) == catalog.expected(
                catalog.vectors["v000"], 5, skip={"v000"}, category=category
            )
            assert body["exhausted"] is False
        everything = client.get("/similar/v000", params={"k": 1000}).json()
        assert sorted(ids_of(everything)) == sorted(set(catalog.served) - {"v000"})
        assert everything["exhausted"] is True


def test_exclude_is_repeatable(client: TestClient, catalog: TinyCatalog) -> None:
    top = ids_of(client.get("/similar/v002", params={"k": 3}).json())
    body = client.get(
        "/similar/v002", params=[("k", "3"), ("exclude", top[0]), ("exclude", top[1])]
    ).json()
    assert ids_of(body) == catalog.expected(
        catalog.vectors["v002"], 3, skip={"v002", top[0], top[1]}
    )


def test_explain_gives_per_modality_similarities(client: TestClient, catalog: TinyCatalog) -> None:
    body = client.get("/similar/v005", params={"k": 3, "explain": "true"}).json()
    for item in body["results"]:
        modalities = item["modalities"]
        assert set(modalities) == {"visual", "audio"}
        for name in ("visual", "audio"):
            expected = float(
                catalog.modalities["v005"][name] @ catalog.modalities[item["video_id"]][name]
            )
            assert np.isclose(modalities[name], expected, atol=1e-5)


def test_unknown_video_is_404(client: TestClient) -> None:
    response = client.get("/similar/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "video_not_found"
    assert response.json()["video_id"] == "nope"


def test_known_but_not_served_is_409_with_status_and_reason(client: TestClient) -> None:
    failed = client.get("/similar/failed1")
    assert failed.status_code == 409
    assert failed.json()["status"] == "failed"
    assert "moov atom" in failed.json()["reason"]
    fresh = client.get("/similar/fresh1")
    assert fresh.status_code == 409
    assert fresh.json()["status"] == "ready"
    assert "not embedded" in fresh.json()["reason"]
    deleted = client.get("/similar/deleted1")
    assert deleted.status_code == 409
    assert deleted.json()["status"] == "deleted"


def test_invalid_parameters_are_422(client: TestClient) -> None:
    for params in (
        {"k": 0},
        {"k": 1001},
        {"k": "ten"},
        {"min_duration": -1},
        {"min_duration": 30, "max_duration": 10},
        {"category": ""},
    ):
        response = client.get("/similar/v001", params=params)
        assert response.status_code == 422, (params, response.text)
    assert client.get("/similar/bad%01id").status_code == 422
