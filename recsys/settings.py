"""Process-wide settings, read from ``RECSYS_*`` environment variables (pydantic-settings).

Everything a run writes lives under ``RECSYS_HOME`` so that one directory is one deployment:
the SQLite database, the feature cache, the embedding store, trained models and indexes.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.errors import UserError


class SettingsError(UserError, ValueError):
    """A ``RECSYS_*`` variable (or an override) has a value the engine cannot use; the message
    names the variable and says what it expects. Still a ``ValueError``, as pydantic's is."""


class Settings(BaseSettings):
    """All knobs of the engine; every field can be set as ``RECSYS_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", extra="ignore")

    home: Path = Field(default=Path(".recsys"), description="Directory holding all state.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default is SQLite at $RECSYS_HOME/recsys.db. "
        "Example: postgresql+psycopg://postgres@127.0.0.1:5432/recsys",
    )
    admin_token: str | None = Field(
        default=None, description="Bearer token for /admin routes; admin routes are off when unset."
    )
    frames_per_video: int = Field(default=16, description="Frames sampled per video in stage A.")
    frame_size: int = Field(default=112, description="Frames are resized to this square size.")
    audio_sample_rate: int = Field(default=16_000, description="Audio is resampled to this rate.")
    decode_timeout_s: float = Field(default=60.0, description="Per-video decode time limit.")
    feature_extractor: str = Field(default="content", description="Default stage-A extractor.")
    index_keep: int = Field(default=3, description="Published index builds kept on disk.")
    index_poll_s: float = Field(default=1.0, description="How often the API checks the pointer.")
    upload_max_bytes: int = Field(
        default=100 * 1024 * 1024, description="POST /similar/upload limit."
    )
    device: str = Field(default="auto", description="Torch device: auto, cpu or cuda.")

    @cached_property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home / 'recsys.db'}"

    @property
    def features_dir(self) -> Path:
        return self.resolved_home / "features"

    @property
    def embeddings_dir(self) -> Path:
        return self.resolved_home / "embeddings"

    @property
    def models_dir(self) -> Path:
        return self.resolved_home / "models"

    @property
    def indexes_dir(self) -> Path:
        return self.resolved_home / "indexes"

    @property
    def thumbnails_dir(self) -> Path:
        return self.resolved_home / "thumbnails"

    @property
    def weights_dir(self) -> Path:
        return self.resolved_home / "weights"

    @property
    def runs_dir(self) -> Path:
        return self.resolved_home / "runs"

    def ensure_dirs(self) -> None:
        for path in (
            self.resolved_home,
            self.features_dir,
            self.embeddings_dir,
            self.models_dir,
            self.indexes_dir,
            self.thumbnails_dir,
            self.weights_dir,
            self.runs_dir,
        ):
            path.mkdir(parents=True, exist_ok=True)


def load_settings(home: Path | str | None = None, **overrides: object) -> Settings:
    """Settings from the environment, with an explicit ``--home`` taking precedence.

    Raises :class:`SettingsError` naming each bad variable (not pydantic's traceback).
    """
    if home is not None:
        overrides["home"] = Path(home)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = "; ".join(
            f"RECSYS_{'_'.join(str(part) for part in e['loc']).upper()}: {e['msg']}"
            f" (got {e['input']!r})"
            for e in error.errors(include_url=False)
        )
        raise SettingsError(
            f"invalid setting: {problems}; fix the variable (or the option that sets it)"
        ) from error
