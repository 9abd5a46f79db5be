"""Typed dependencies: settings, the live index holder and DB sessions.

Routes take the holder and call ``holder.require_state()`` once, after FastAPI has validated
the parameters (so a bad request is a 422 even while no index is loaded), and use that one state
to the end of the request, even if a swap happens meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.config import ApiOptions
from api.holder import IndexHolder
from recsys.db import Database
from recsys.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_options(request: Request) -> ApiOptions:
    return request.app.state.options  # type: ignore[no-any-return]


async def get_holder(request: Request) -> IndexHolder:
    return request.app.state.holder  # type: ignore[no-any-return]


async def get_database(request: Request) -> Database:
    return request.app.state.database  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
OptionsDep = Annotated[ApiOptions, Depends(get_options)]
HolderDep = Annotated[IndexHolder, Depends(get_holder)]
DatabaseDep = Annotated[Database, Depends(get_database)]


def get_session(database: DatabaseDep) -> Iterator[Session]:
    with database.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
