"""Entry point for uvicorn: ``uvicorn --factory api.main:app`` builds the app from ``RECSYS_*``
environment variables, which is how ``recsys serve --workers N`` hands settings to each worker."""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app
from recsys.settings import load_settings


def app() -> FastAPI:
    """App factory for uvicorn (settings from the environment)."""
    return create_app(load_settings())
