"""An API worker that starts over damaged derived files (a truncated catalog column, truncated
mapped modality vectors, a truncated store shard) serves its index: the catalog files are
rebuilt from the database, explanations are off while the store cannot be read."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from api.config import ApiOptions
from api.factory import create_app
from recsys.db import Database
from recsys.settings import Settings
from tests.serving.catalog import TinyCatalog


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _only_directory(root: Path) -> Path:
    (found,) = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return found


def test_a_worker_starting_over_damaged_derived_files_serves(
    catalog: TinyCatalog, settings: Settings, database: Database, api_options: ApiOptions
) -> None:
    query = {"k": 3, "explain": "true"}
    with TestClient(create_app(settings, options=api_options, database=database)) as client:
        assert client.get("/similar/v004", params=query).status_code == 200
    _truncate(_only_directory(settings.indexes_dir / ".catalog") / "video_keys.npy", 100)
    mapped = _only_directory(settings.embeddings_dir / ".mapped" / catalog.model_version)
    _truncate(mapped / "audio.npy", 200)
    for shard in (settings.embeddings_dir / catalog.model_version).glob("*.npz"):
        _truncate(shard, 300)
    app = create_app(settings, options=api_options, database=database)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/similar/v004", params=query)
        assert response.status_code == 200, response.text
        items = response.json()["results"]
        assert items and not any(item.get("modalities") for item in items)
