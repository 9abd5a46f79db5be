"""Process-wide settings, read from ``RECSYS_*`` environment variables (pydantic-settings).

Everything a run writes lives under ``RECSYS_HOME`` so that one directory is one deployment:
the SQLite database, the feature cache, the embedding store, trained models and indexes.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from recsys.choices import IndexVerify, TorchDevice
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
    db_connect_timeout_s: float = Field(
        default=5.0, gt=0, description="PostgreSQL: seconds a new connection may take to open."
    )
    db_statement_timeout_ms: int = Field(
        default=30_000,
        ge=0,
        description="PostgreSQL: longest a statement may run, in ms (0: no limit; migrations "
        "always run without one).",
    )
    db_pool_size: int = Field(
        default=4, ge=1, description="PostgreSQL: connections each process keeps open."
    )
    db_max_overflow: int = Field(
        default=4, ge=0, description="PostgreSQL: extra connections a process may open at peaks."
    )
    db_pool_timeout_s: float = Field(
        default=10.0, gt=0, description="PostgreSQL: seconds to wait for a free pooled connection."
    )
    db_migrate: bool = Field(
        default=True,
        description="Apply schema migrations on first use in a process; when off, the schema "
        "is only checked (`recsys serve` migrates once and turns it off for its workers).",
    )
    admin_token: str | None = Field(
        default=None, description="Bearer token for /admin routes; admin routes are off when unset."
    )
    frames_per_video: int = Field(default=16, description="Frames sampled per video in stage A.")
    frame_size: int = Field(default=112, description="Frames are resized to this square size.")
    audio_sample_rate: int = Field(default=16_000, description="Audio is resampled to this rate.")
    decode_timeout_s: float = Field(default=60.0, description="Per-video decode time limit.")
    decode_memory_mb: int = Field(
        default=8192,
        ge=0,
        description="Address-space limit (RLIMIT_AS) of each decode worker process in MiB; "
        "0 = no limit.",
    )
    decode_max_pixels: int = Field(
        default=8192 * 4352,
        ge=1,
        description="Largest frame (width x height) a video may declare; bigger ones are refused "
        "before decoding. Default: 8192x4352, the largest H.264/HEVC/AV1 level-6.2 picture.",
    )
    decode_threads: int = Field(
        default=1, ge=1, le=64, description="FFmpeg codec threads per decode (per worker)."
    )
    media_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders (or files) whose videos may be ingested and served, separated by "
        f"{os.pathsep!r} (or a JSON list); empty: the folders and manifests that were ingested.",
    )
    feature_extractor: str = Field(
        default="visual=efficientnet-lite:lite0,audio=content",
        description="Stage-A spec of a new home (a home keeps the spec it was built with; see "
        "recsys.features.home_spec); setting it explicitly overrides the home's.",
    )
    feature_cache_memory_mb: int = Field(
        default=256,
        ge=0,
        description="Feature cache: MiB of opened packs (headers, index, columns read whole) "
        "each reader keeps in memory, least recently used out first (the 4 latest always stay).",
    )
    moments_memory_mb: int = Field(
        default=64,
        ge=0,
        description="explain=moments: MiB of per-segment features each API worker keeps for "
        "the videos it compared last (least recently used out first): a video asked about "
        "again, or shown again as a result, is not read from the feature cache again.",
    )
    index_keep: int = Field(default=3, description="Published index builds kept on disk.")
    store_compact_rows: int = Field(
        default=1_000_000,
        ge=1,
        description="Embedding store: rows per compacted file (a few files per million videos).",
    )
    store_compact_min_shards: int = Field(
        default=16,
        ge=2,
        description="Embedding store: a refresh compacts a model version's shards once this "
        "many hold fewer than `store_compact_rows` rows.",
    )
    index_poll_s: float = Field(default=1.0, description="How often the API checks the pointer.")
    index_mmap: bool = Field(
        default=True,
        description="API workers map the published index (and the per-modality vectors) "
        "read-only, one copy in the page cache for all of them, instead of private copies.",
    )
    index_verify: IndexVerify = Field(
        default=IndexVerify.ONCE,
        description="Checksums of published index files: hashed at the first load and trusted "
        "while the file is unchanged (once; index/verified.py), or hashed at every load (always).",
    )
    upload_max_bytes: int = Field(
        default=100 * 1024 * 1024, description="POST /similar/upload limit."
    )
    device: TorchDevice = Field(
        default=TorchDevice.AUTO,
        description="Torch device for training and embedding: auto (CUDA when present), cpu or "
        "cuda; recsys.device.resolve_device makes it concrete.",
    )

    @field_validator("media_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part for part in text.split(os.pathsep) if part.strip()]
        return value

    @cached_property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home / 'recsys.db'}"

    @property
    def resolved_media_roots(self) -> list[Path]:
        """``media_roots`` as absolute real paths (empty: use the roots ingest recorded)."""
        return [Path(root).expanduser().resolve() for root in self.media_roots]

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


def setting_variable(name: str) -> str:
    """The environment variable that sets the field ``name`` (``RECSYS_<NAME>``)."""
    if name not in Settings.model_fields:
        raise KeyError(f"{name!r} is not a setting")
    return f"{Settings.model_config['env_prefix']}{name.upper()}"


def setting_default(name: str) -> Any:
    """The default of the field ``name``, as declared on :class:`Settings`."""
    return Settings.model_fields[name].get_default(call_default_factory=True)


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
