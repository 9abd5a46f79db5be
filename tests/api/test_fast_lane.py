"""The fast lane (:mod:`api.lane`) answers ``GET /similar/{video_id}`` requests that run
inline before the app's middleware: every request must get the same status, headers and body
as from the app without it, the route must not be reached for the ones it answers, and they
are counted in the same metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from api import recommend
from api.config import ApiOptions
from api.factory import create_app
from recsys.db import Database
from recsys.settings import Settings
from tests.serving.catalog import TinyCatalog

PLAIN = [
    ("/similar/v001", {}),
    ("/similar/v002", {"k": 1}),
    ("/similar/v003", {"k": 7, "dedup": "false"}),
    ("/similar/v004", {"k": 5, "source": "content"}),
]
DECLINED = [  # the route answers errors and searches in a thread (pools, pages, filters)
    ("/similar/v001", {"k": 4, "explain": "true"}),
    ("/similar/v001", {"k": 6, "diversity": 0.5, "max_per_channel": 1}),
    ("/similar/v001", {"k": 3, "offset": 3}),
    ("/similar/v001", {"k": 3, "category": "music"}),
    ("/similar/nope", {}),
    ("/similar/failed1", {}),
    ("/similar/deleted1", {}),
    ("/similar/fresh1", {}),
    ("/similar/v001", {"kk": 3}),
    ("/similar/v001", {"k": 0}),
    ("/similar/v001", {"k": "ten"}),
    ("/similar/v001", {"page_token": "not-a-token"}),
    ("/similar/%00bad", {}),
    ("/similar/", {}),
]


@pytest.fixture
def clients(
    catalog: TinyCatalog, settings: Settings, database: Database
) -> Iterator[tuple[TestClient, TestClient]]:
    """The same app with and without the lane."""
    with_lane = create_app(settings, options=ApiOptions(fast_lane=True), database=database)
    without = create_app(settings, options=ApiOptions(fast_lane=False), database=database)
    with (
        TestClient(with_lane, raise_server_exceptions=False) as fast,
        TestClient(without, raise_server_exceptions=False) as slow,
    ):
        yield fast, slow


def _answered(client: TestClient, method: str, path: str, params: dict[str, Any]) -> Any:
    """Status, headers and body, with the request id an error carries fixed (sent by the
    client, so both apps echo the same one)."""
    headers = {"X-Request-ID": "lane-test"}
    response = client.request(method, path, params=params, headers=headers)
    return response.status_code, dict(response.headers), response.content


@pytest.mark.parametrize(("path", "params"), PLAIN + DECLINED)
def test_every_request_gets_what_the_app_without_the_lane_gives(
    clients: tuple[TestClient, TestClient], path: str, params: dict[str, Any]
) -> None:
    fast, slow = clients
    for method in ("GET", "HEAD", "POST"):
        assert _answered(fast, method, path, params) == _answered(slow, method, path, params)


def test_inline_requests_never_reach_the_route_and_are_counted(
    clients: tuple[TestClient, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, slow = clients
    reached: list[str] = []
    route_answer = recommend.answer

    async def counting(*args: Any, **kwargs: Any) -> Any:
        reached.append(args[2].query.video_id)
        return await route_answer(*args, **kwargs)

    monkeypatch.setattr(recommend, "answer", counting)
    labels = {"route": "/similar/{video_id}", "method": "GET", "status": "200"}
    before = REGISTRY.get_sample_value("recsys_http_requests_total", labels) or 0.0
    for path, params in PLAIN:
        assert fast.get(path, params=params).status_code == 200
    assert reached == []
    after = REGISTRY.get_sample_value("recsys_http_requests_total", labels)
    assert after == before + len(PLAIN)
    for path, params in PLAIN:  # without the lane, the route answers each one
        assert slow.get(path, params=params).status_code == 200
    assert len(reached) == len(PLAIN)
    fast.get("/similar/v002", params={"k": 4, "category": "news"})  # a new filter: a thread
    assert len(reached) == len(PLAIN) + 1


def test_a_get_with_a_body_is_left_to_the_request_limits(
    clients: tuple[TestClient, TestClient],
) -> None:
    fast, slow = clients
    body = b"x" * (ApiOptions().max_body_bytes + 1)
    for client in (fast, slow):
        response = client.request("GET", "/similar/v001", content=body)
        assert response.status_code == 413, response.text
