"""The one error contract of the API: every deliberate error is a RecsysError, answered by the
status of its nearest class in ``api.errors.HTTP_ERRORS``; the uvicorn entry point resolves."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

import api
from api import errors
from api.config import ApiOptions
from api.uvicorn_runner import UVICORN_FACTORY
from index.errors import IndexLoadError
from recsys.choices import GpuMode
from recsys.db.session import DatabaseUnavailable
from recsys.errors import ConflictError, NotFoundError, RecsysError, ResourceError, UserError
from recsys.media.errors import CorruptMedia

API_DIR = Path(api.__file__).resolve().parent


def _answer(error: Exception) -> tuple[int, dict, dict[str, str]]:
    app = FastAPI()
    errors.install_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise error

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    return response.status_code, response.json(), dict(response.headers)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.VideoNotFound("no such video", video_id="x"), 404, "video_not_found"),
        (errors.MissingFile("no file", video_id="x"), 404, "not_found"),
        (errors.VideoNotServed("failed", video_id="x", status="failed"), 409, "video_not_embedded"),
        (errors.InvalidQuery("examples cancel out"), 422, "invalid_query"),
        (errors.MediaRejected("cannot decode"), 422, "media_rejected"),
        (errors.UnsupportedMediaType("not a video"), 415, "unsupported_media_type"),
        (errors.UploadTooLarge("too big"), 413, "upload_too_large"),
        (errors.Unauthorized("token"), 401, "unauthorized"),
        (errors.ServiceUnavailable("no index"), 503, "unavailable"),
        # Errors of lower layers take the row of their nearest ancestor.
        (NotFoundError("no model m1"), 404, "not_found"),
        (ConflictError("no active model"), 409, "conflict"),
        (UserError("bad option"), 400, "bad_request"),
        (CorruptMedia("/tmp/a.mp4", "truncated"), 422, "media_rejected"),
        (IndexLoadError("index v1 is corrupt"), 503, "unavailable"),
        # the machine refused a resource (the database went away, a full disk): retry later
        (DatabaseUnavailable("cannot reach postgresql://u:***@h/db"), 503, "unavailable"),
        (ResourceError("no space left on /home"), 503, "unavailable"),
    ],
)
def test_each_error_class_has_one_status(error: Exception, status: int, code: str) -> None:
    got, body, headers = _answer(error)
    assert (got, body["error"]) == (status, code)
    assert body["detail"]
    assert set(body) == {"error", "detail", "video_id", "status", "reason", "request_id"}
    assert body["video_id"] == getattr(error, "video_id", None)
    assert body["request_id"] and headers["x-request-id"] == body["request_id"]
    if status == 503:
        assert headers["retry-after"] == "1"
    if status == 401:
        assert headers["www-authenticate"] == "Bearer"


def test_a_recsys_error_without_a_row_is_a_logged_500_with_a_generic_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unforeseen(RecsysError):
        pass

    status, body, headers = _answer(Unforeseen("/secret/path exploded"))
    assert status == 500
    assert body == {
        "error": "internal",
        "detail": "internal error; see the server log",
        "request_id": headers["x-request-id"],
    }
    assert "Unforeseen" in caplog.text
    assert headers["x-request-id"] in caplog.text  # the log line names the request


def test_every_api_error_is_a_recsys_error_with_its_own_row_and_no_status() -> None:
    classes = [
        c
        for c in vars(errors).values()
        if inspect.isclass(c) and issubclass(c, Exception) and c.__module__ == errors.__name__
    ]
    assert errors.ApiError in classes
    for cls in classes:
        assert issubclass(cls, RecsysError), cls
        assert not hasattr(cls, "status_code"), cls
        if cls is not errors.ApiError:
            assert cls in errors.HTTP_ERRORS, cls


def test_recommend_raises_no_http_errors() -> None:
    # (the serving layer cannot: it imports nothing of the api, see make lint)
    for module in ("recommend.py",):
        tree = ast.parse((API_DIR / module).read_text())
        names = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        assert "HTTPException" not in names, module
        assert not {"Unauthorized", "UploadTooLarge", "UnsupportedMediaType"} & names, module


def test_the_uvicorn_factory_string_builds_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, _, name = UVICORN_FACTORY.partition(":")
    factory = getattr(importlib.import_module(module), name)
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)
    app = factory()
    assert isinstance(app, FastAPI)
    assert app.state.settings.resolved_home == (tmp_path / "home").resolve()
    app.state.database.dispose()


def test_api_gpu_option_is_a_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ApiOptions().gpu is GpuMode.AUTO
    monkeypatch.setenv("RECSYS_API_GPU", "off")
    assert ApiOptions().gpu is GpuMode.OFF
    with pytest.raises(ValidationError):
        ApiOptions(gpu="maybe")  # type: ignore[arg-type]
