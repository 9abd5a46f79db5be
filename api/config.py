"""API-only knobs (``RECSYS_API_*``), kept apart from the engine-wide :class:`Settings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.choices import GpuMode


class ApiOptions(BaseSettings):
    """Serving options; every field can be set as ``RECSYS_API_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_API_", extra="ignore")

    metadata_refresh_s: float = Field(
        default=30.0,
        description="How often the in-memory catalog picks up changed rows (status, titles); "
        "each refresh scans videos.updated_at.",
    )
    search_threads: int = Field(
        default=1,
        description="FAISS threads per worker; 1 suits many small concurrent queries.",
    )
    upload_concurrency: int = Field(
        default=1, description="Uploads decoded and embedded at the same time per worker."
    )
    inline_search_limit: int = Field(
        default=4096,
        description="Searches deeper than this run in a thread so the event loop stays free.",
    )
    gpu: GpuMode = Field(
        default=GpuMode.AUTO,
        description="Search the index on the GPU: auto (when faiss sees one), on or off.",
    )
