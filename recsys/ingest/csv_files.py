"""Reading the CSV files that ingest takes (manifests and related pairs).

Files are UTF-8 (a BOM is tolerated). Undecodable bytes are kept as surrogates so that each bad
row can be rejected on its own while the rest of the file is read.
"""

from __future__ import annotations

import csv
import io
import os
import stat
from pathlib import Path

from recsys.errors import UserError


def has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


class UnreadableCsv(UserError):
    """A CSV file that cannot be read at all (the message says why; the fix is in the file)."""


def open_csv(path: Path) -> tuple[csv.DictReader[str], list[str]]:
    """A dict reader over a UTF-8 (BOM tolerated) CSV file and its stripped header.

    Undecodable bytes are kept as surrogates so each row can be rejected alone; a file that
    cannot be read, is not CSV or has an undecodable header raises :class:`UnreadableCsv`.
    """
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):  # a FIFO or a device would block or never end
            raise UnreadableCsv("is not a regular file; name a CSV file")
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise UnreadableCsv("is not a regular file; name a CSV file")
            raw = handle.read()
    except OSError as error:
        raise UnreadableCsv(f"cannot be read: {error.strerror or error}") from None
    text = raw.decode("utf-8-sig", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as error:
        raise UnreadableCsv(f"is not a CSV file: {error}") from None
    if any(has_surrogates(h) for h in header):
        raise UnreadableCsv("header is not valid UTF-8 text")
    reader.fieldnames = header
    return reader, header
