"""GET /similar/{id}?source=content|collaborative|hybrid: the co-watch graph published with the
index, blended by each video's evidence, explained per result (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.config import ApiOptions
from api.factory import create_app
from index import load_active
from recsys.db import Database
from recsys.ingest import load_related
from recsys.settings import Settings
from tests.api.conftest import ADMIN_TOKEN
from tests.serving.catalog import TinyCatalog, publish

#: v004's partners, strongest first; v055 is in the other list only; failed1 is never served.
PAIRS = [
    ("v004", "v010", 5.0),
    ("v004", "v020", 3.0),
    ("v033", "v004", 1.0),
    ("v010", "v020", 2.0),
    ("v004", "failed1", 9.0),
    ("v010", "v055", 1.0),
]


def ids_of(body: dict) -> list[str]:  # type: ignore[type-arg]
    return [item["video_id"] for item in body["results"]]


def _pairs(settings: Settings, database: Database, rows: list[tuple[str, str, float]]) -> None:
    path = Path(settings.resolved_home) / "pairs.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_a", "video_b", "weight"])
        writer.writerows(rows)
    report = load_related(settings, database, path, source="events")
    assert report.pairs == len(rows)


@pytest.fixture
def graph_client(
    catalog: TinyCatalog, settings: Settings, database: Database
) -> Iterator[TestClient]:
    """The tiny catalog with co-watch pairs, re-published so the index carries the graph."""
    _pairs(settings, database, PAIRS)
    catalog.index_version = publish(settings, database, catalog)
    app = create_app(settings, options=ApiOptions(metadata_refresh_s=0.1), database=database)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_without_a_graph_content_is_the_default_and_collaborative_is_409(
    client: TestClient, catalog: TinyCatalog
) -> None:
    body = client.get("/similar/v004", params={"k": 5}).json()
    assert body["source"] == "content"
    assert ids_of(body) == catalog.expected(catalog.vectors["v004"], 5, skip={"v004"})
    for source in ("collaborative", "hybrid"):
        refused = client.get("/similar/v004", params={"source": source})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "no_cowatch_graph"
    assert client.get("/similar/v004", params={"source": "social"}).status_code == 422


def test_the_graph_is_published_with_the_index(
    graph_client: TestClient, catalog: TinyCatalog, settings: Settings
) -> None:
    loaded = load_active(settings)
    assert loaded is not None and loaded.version == catalog.index_version
    assert loaded.manifest.cowatch_sha256 and (loaded.directory / "cowatch.npz").is_file()
    assert loaded.cowatch is not None
    # failed1 is not served by the index, so its pair is not in the published graph.
    assert loaded.cowatch.evidence(catalog.video_keys["v004"]) == 3
    assert loaded.manifest.cowatch_videos == 5


def test_collaborative_neighbours_come_from_the_graph_strongest_first(
    graph_client: TestClient, catalog: TinyCatalog
) -> None:
    body = graph_client.get(
        "/similar/v004", params={"source": "collaborative", "k": 10, "explain": True}
    ).json()
    assert body["source"] == "collaborative"
    assert body["index_version"] == catalog.index_version
    assert ids_of(body) == ["v010", "v020", "v033"]
    assert [item["score"] for item in body["results"]] == [5.0, 3.0, 1.0]
    assert {item["source"] for item in body["results"]} == {"collaborative"}
    assert body["exhausted"] is True
    two = graph_client.get("/similar/v004", params={"source": "collaborative", "k": 2}).json()
    assert ids_of(two) == ["v010", "v020"] and two["exhausted"] is False
    # Filters and exclusions apply to the graph's partners too.
    category = catalog.categories["v010"]
    filtered = graph_client.get(
        "/similar/v004",
        params={"source": "collaborative", "category": category, "exclude": ["v020"]},
    ).json()
    expected = [v for v in ("v010", "v033") if catalog.categories[v] == category]
    assert ids_of(filtered) == expected


def test_hybrid_is_the_default_and_blends_by_evidence(
    graph_client: TestClient, catalog: TinyCatalog
) -> None:
    body = graph_client.get("/similar/v004", params={"k": 8, "explain": True}).json()
    assert body["source"] == "hybrid"
    results = body["results"]
    returned = ids_of(body)
    # v004 has 3 served partners: a small co-watch share, on the content scale
    expected = catalog.blended("v004", PAIRS, ApiOptions().blend, 8)
    assert returned == [v for v, _ in expected]
    assert [item["score"] for item in results] == pytest.approx([s for _, s in expected], abs=1e-5)
    content = catalog.expected(catalog.vectors["v004"], 8, skip={"v004"})
    sources = {item["video_id"]: item["source"] for item in results}
    for video_id, source in sources.items():
        in_graph = video_id in {"v010", "v020", "v033"}
        in_content = video_id in content
        assert source == {(True, True): "both", (True, False): "collaborative"}.get(
            (in_graph, in_content), "content"
        )
    assert all(item["modalities"] is not None for item in results)
    plain = graph_client.get("/similar/v004", params={"k": 8}).json()
    assert ids_of(plain) == returned and all(i["source"] is None for i in plain["results"])


@pytest.mark.parametrize(
    ("prior", "max_share", "first"),
    [
        (10.0, 0.0, None),  # no co-watch share: the content order
        (0.0, 1.0, ["v010", "v020", "v033"]),  # co-watch alone: partners by weight first
    ],
)
def test_the_blend_settings_decide_how_much_cowatch_counts(
    catalog: TinyCatalog,
    settings: Settings,
    database: Database,
    prior: float,
    max_share: float,
    first: list[str] | None,
) -> None:
    _pairs(settings, database, PAIRS)
    catalog.index_version = publish(settings, database, catalog)
    options = ApiOptions(metadata_refresh_s=0.1, hybrid_prior=prior, hybrid_max_share=max_share)
    app = create_app(settings, options=options, database=database)
    with TestClient(app, raise_server_exceptions=False) as client:
        returned = ids_of(client.get("/similar/v004", params={"k": 6}).json())
    content = catalog.expected(catalog.vectors["v004"], 6, skip={"v004"})
    if first is None:
        assert returned == content
    else:
        rest = [v for v in catalog.expected(catalog.vectors["v004"], 9, skip={"v004"})]
        assert returned == (first + [v for v in rest if v not in first])[:6]


def test_a_cold_video_gets_content_only(graph_client: TestClient, catalog: TinyCatalog) -> None:
    cold = "v050"  # no co-watch partners
    hybrid = graph_client.get(f"/similar/{cold}", params={"k": 6, "explain": True}).json()
    content = graph_client.get(f"/similar/{cold}", params={"k": 6, "source": "content"}).json()
    assert (
        ids_of(hybrid) == ids_of(content) == catalog.expected(catalog.vectors[cold], 6, skip={cold})
    )
    assert {item["source"] for item in hybrid["results"]} == {"content"}
    empty = graph_client.get(f"/similar/{cold}", params={"source": "collaborative"}).json()
    assert empty["results"] == [] and empty["exhausted"] is True


def test_a_new_graph_is_served_with_its_own_index_version(
    graph_client: TestClient, catalog: TinyCatalog, settings: Settings, database: Database
) -> None:
    before = graph_client.get("/similar/v033", params={"source": "collaborative"}).json()
    assert ids_of(before) == ["v004"]
    _pairs(settings, database, [("v033", "v040", 7.0)])
    new_version = publish(settings, database, catalog)
    reload = graph_client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert reload.status_code == 200, reload.text
    after = graph_client.get("/similar/v033", params={"source": "collaborative"}).json()
    assert after["index_version"] == new_version != before["index_version"]
    assert ids_of(after) == ["v040", "v004"]
