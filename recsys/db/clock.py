"""The database's clock, for the times readers compare with each other's.

``videos.updated_at`` tells the API which rows changed since its last look. Stamped with each
writer's own clock, a writer whose clock (or commit) lags the API's stamps a change older than
the API's last check and the change is never seen. Stamped by the database (and the API's
floor read from the same clock), every party compares one clock.

PostgreSQL: ``clock_timestamp()`` (the statement's time; ``now()`` would be the transaction's
start). SQLite: the time of the process that writes the file, with the microsecond digits of
the format SQLAlchemy stores (so stamps compare as strings with the ones it writes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["database_now", "database_time"]


class database_now(FunctionElement[Any]):  # noqa: N801 - used like a SQL function
    """The database server's current time, as a SQL expression (a column default, a SELECT)."""

    type = DateTime(timezone=True)
    inherit_cache = True


@compiles(database_now)
def _standard(element: database_now, compiler: Any, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@compiles(database_now, "postgresql")
def _postgresql(element: database_now, compiler: Any, **kw: Any) -> str:
    return "clock_timestamp()"


@compiles(database_now, "sqlite")
def _sqlite(element: database_now, compiler: Any, **kw: Any) -> str:
    return "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


def database_time(session: Session) -> datetime:
    """The database's current time (naive on SQLite, aware on PostgreSQL, like the columns)."""
    value = session.execute(select(database_now())).scalar_one()
    if isinstance(value, str):  # a driver that hands the text back unparsed
        value = datetime.fromisoformat(value)
    return value
