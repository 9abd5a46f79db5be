"""Damaging one entry of a feature pack in place, as rot or a stray write would."""

from __future__ import annotations

from pathlib import Path

from recsys.features.cache.packs import read_pack


def flip_entry_byte(pack_path: Path, field: str, row: int) -> None:
    """Flip one bit in the middle of entry ``row``'s rows of ``field``, in place."""
    pack = read_pack(pack_path, lazy=True)
    column = pack.layout[field]
    offsets = pack.columns[f"{field}.offsets"]
    begin = column.begin + int(offsets[row]) * column.row_bytes
    end = column.begin + int(offsets[row + 1]) * column.row_bytes
    data = bytearray(pack_path.read_bytes())
    data[(begin + end) // 2] ^= 0x01
    pack_path.write_bytes(bytes(data))
