"""The web page: search, the video page with its player and recommendations; and a real
headless Chromium clicking through it."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.config import ApiOptions
from api.factory import create_app
from recsys.db import Database
from recsys.settings import Settings
from recsys.testing import free_port
from tests.conftest import require
from tests.serving.catalog import TinyCatalog, build_catalog

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def linked_ids(html: str) -> list[str]:
    return re.findall(r'data-video-id="([^"]+)"', html)


def test_home_lists_the_catalog_and_searches_titles_and_ids(client: TestClient) -> None:
    home = client.get("/")
    assert home.status_code == 200 and "text/html" in home.headers["content-type"]
    assert "v000" in linked_ids(home.text)
    sports = linked_ids(client.get("/", params={"q": "sports"}).text)
    assert sports and all(int(v[1:]) % 3 == 1 for v in sports)
    exact = linked_ids(client.get("/", params={"q": "v013"}).text)
    assert exact[0] == "v013"
    assert "No videos match" in client.get("/", params={"q": "zzz%_"}).text


def test_video_page_has_player_poster_and_ranked_recommendations(
    client: TestClient, catalog: TinyCatalog
) -> None:
    page = client.get("/ui/videos/v000")
    assert page.status_code == 200
    assert 'poster="/thumbnails/v000.jpg"' in page.text
    assert '<source src="/media/v000">' in page.text
    expected = catalog.expected(catalog.vectors["v000"], 12, skip={"v000"})
    assert linked_ids(page.text) == expected


def test_video_page_errors(client: TestClient) -> None:
    missing = client.get("/ui/videos/nope")
    assert missing.status_code == 404 and "not in the catalog" in missing.text
    failed = client.get("/ui/videos/failed1")
    assert failed.status_code == 200
    assert 'id="problem"' in failed.text and "failed" in failed.text
    assert client.get("/ui/videos/v000", params={"k": 0}).status_code == 422


@pytest.fixture
def sqlite_catalog(
    sqlite_settings: Settings, sqlite_database: Database
) -> tuple[TinyCatalog, Database]:
    """The browser drives one SQLite-backed app (the HTML is the same on PostgreSQL)."""
    return build_catalog(sqlite_settings, sqlite_database), sqlite_database


@pytest.fixture
def live_server(sqlite_catalog: tuple[TinyCatalog, Database]) -> Iterator[str]:
    """The app under a real uvicorn on a free port, in a thread."""
    catalog, database = sqlite_catalog
    app = create_app(catalog.settings, options=ApiOptions(), database=database)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.browser
def test_browser_search_watch_and_follow_recommendations(
    live_server: str, sqlite_catalog: tuple[TinyCatalog, Database]
) -> None:
    require(CHROMIUM.exists(), f"no browser at {CHROMIUM} (apt-get install chromium)")
    catalog, _ = sqlite_catalog
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(live_server + "/")
            page.fill("#search-box", "Music clip 3")
            page.click("#search-button")
            page.wait_for_url(re.compile(r"q=Music"))
            first = page.locator("#results a").first
            assert first.get_attribute("data-video-id") == "v003"
            first.click()
            page.wait_for_url(re.compile(r"/ui/videos/v003$"))
            assert page.inner_text("#video-title") == "Music clip 3"
            player = page.locator("#player")
            assert player.get_attribute("poster") == "/thumbnails/v003.jpg"
            cards = page.locator("#recommendations a")
            expected = catalog.expected(catalog.vectors["v003"], 12, skip={"v003"})
            assert [cards.nth(i).get_attribute("data-video-id") for i in range(12)] == expected
            loaded = page.evaluate(
                "Array.from(document.querySelectorAll('#recommendations img'))"
                ".filter(img => img.complete && img.naturalWidth > 0).length"
            )
            assert loaded >= 1
            cards.nth(0).click()
            page.wait_for_url(re.compile(rf"/ui/videos/{expected[0]}$"))
            page.goto(live_server + "/ui/videos/v000")
            page.wait_for_function(
                "document.querySelector('#player').readyState >= 1", timeout=15000
            )
            duration = page.evaluate("document.querySelector('#player').duration")
            assert duration == pytest.approx(1.0, abs=0.2)
            page.screenshot(path="/tmp/recsys-api-ui.png", full_page=True)
        finally:
            browser.close()
