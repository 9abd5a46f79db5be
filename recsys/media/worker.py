"""The decode worker process behind ``recsys.media.limits.run_isolated``.

Reads ``(module, function, args)`` requests from stdin and writes ``(status, payload)``
replies to stdout, one length-prefixed pickle each, until stdin closes. Before anything else it
enters the limits its environment names (``RECSYS_DECODE_*``, see
:class:`recsys.media.limits.DecodeLimits`): the address-space limit holds for its whole life.
A job that runs out of memory answers ``("memory", reason)`` and the caller replaces the worker.
"""

from __future__ import annotations

import importlib
import os
import sys

from recsys.media.limits import (
    DecodeLimits,
    apply_worker_limits,
    read_message,
    write_message,
)


def main() -> None:
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    # Anything a library prints must not corrupt the reply channel.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    apply_worker_limits(DecodeLimits.from_env(os.environ))
    # Import PyAV (and the media errors) before saying ready, under the limits.
    importlib.import_module("recsys.media.decode")
    from recsys.media.errors import MediaError

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
        except MemoryError as error:
            reply = ("memory", f"{type(error).__name__}: {error}")
        except Exception as error:  # noqa: BLE001 - reported to the caller
            reply = ("crash", f"{type(error).__name__}: {error}")
        write_message(out, reply)


if __name__ == "__main__":
    main()
