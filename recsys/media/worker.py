"""The decode worker process behind ``recsys.media.limits.run_isolated``.

Reads ``(module, function, args)`` requests from stdin and writes ``(status, payload)``
replies to stdout, one length-prefixed pickle each, until stdin closes.
"""

from __future__ import annotations

import importlib
import os
import sys

from recsys.media import decode as _preload  # noqa: F401 - import PyAV before saying ready
from recsys.media.errors import MediaError
from recsys.media.limits import read_message, write_message


def main() -> None:
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    # Anything a library prints must not corrupt the reply channel.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    fd = sys.stdin.fileno()
    write_message(out, "ready")
    while True:
        try:
            module, name, args = read_message(fd, None)
        except Exception:  # noqa: BLE001 - stdin closed: the caller is gone
            return
        try:
            fn = getattr(importlib.import_module(module), name)
            reply: tuple[str, object] = ("ok", fn(*args))
        except MediaError as error:
            reply = ("error", error)
        except Exception as error:  # noqa: BLE001 - reported to the caller
            reply = ("crash", f"{type(error).__name__}: {error}")
        write_message(out, reply)


if __name__ == "__main__":
    main()
