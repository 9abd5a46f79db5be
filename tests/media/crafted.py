"""Crafted media files for the limit tests: small files that ask a decoder for too much."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np

from recsys.synth import write_test_video


def write_huge_declared_avi(path: Path, width: int = 12000, height: int = 12000) -> Path:
    """A few-kilobyte MJPEG AVI whose headers (AVI main header, stream format, every JPEG
    frame) declare ``width x height`` frames while it holds 64x48 pictures."""
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mjpeg", rate=4)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        for i in range(4):
            picture = np.full((48, 64, 3), 40 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, "rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = bytearray(path.read_bytes())
    start = 0
    while (start := data.find(b"\xff\xc0", start)) >= 0:  # JPEG SOF0: height, width
        data[start + 5 : start + 9] = struct.pack(">HH", height, width)
        start += 2
    main = data.find(b"avih") + 8  # dwWidth, dwHeight after eight 32-bit fields
    data[main + 32 : main + 40] = struct.pack("<II", width, height)
    strf = data.find(b"strf") + 8  # BITMAPINFOHEADER: biSize, biWidth, biHeight
    data[strf + 4 : strf + 12] = struct.pack("<ii", width, height)
    path.write_bytes(bytes(data))
    return path


def write_concat_list(path: Path, clip: Path) -> Path:
    """An FFmpeg concat list naming ``clip`` (relative to the list, which the concat demuxer's
    safe mode allows)."""
    relative = clip.relative_to(path.parent)
    path.write_text(f"ffconcat version 1.0\nfile {relative}\nfile {relative}\n", encoding="utf-8")
    return path


def write_hls_playlist(path: Path) -> Path:
    """An HLS playlist with one local MPEG-TS segment beside it."""
    segment = write_test_video(path.parent / "segment.ts", seconds=1.0, width=32, height=24)
    path.write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:1.0,\n{segment.name}\n#EXT-X-ENDLIST\n",
        encoding="utf-8",
    )
    return path
