"""The print journal on disk: `<state folder>/journal.json`, written atomically (a crash or a
power cut leaves the old record or the new one, never a torn mix), read back at the next start,
cleared when the print ends, set aside when it cannot be read. `serve_journal` is the trio
task that writes what the session's journal asks for, off the event loop's thread.

What the record holds and when it is due is the session's (pipeline/session/recovery.py); this
module only moves JSON objects to and from the file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from pipeline.errors import HostError
from pipeline.files.atomic import write_atomically

log = logging.getLogger("printpipe.journal")

NAME = "journal.json"
#: A journal is a few hundred bytes; anything much larger is not one.
MAX_SIZE = 16 * 1024
#: How often the writer task asks the session whether a write is due (seconds).
POLL = 0.25

#: (kind, data): ("write", the JSON object) or ("clear", None); None when nothing is due.
Action = tuple[str, dict[str, Any] | None] | None


class JournalUnreadable(HostError):
    """journal.json exists but is not a JSON object (a torn disk, an edit by hand)."""


class JournalFile:
    """The journal file of one state folder, with counters of what was written."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.path = os.path.join(folder, NAME)
        self.writes = 0
        self.bytes_written = 0

    def write(self, data: dict[str, Any]) -> None:
        """Replace the journal with `data` (fsynced, mode 0600)."""
        body = json.dumps(data, separators=(",", ":"), sort_keys=True).encode() + b"\n"
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        write_atomically(self.path, body, prefix=".journal-")
        self.writes += 1
        self.bytes_written += len(body)

    def read(self) -> dict[str, Any] | None:
        """The journal's object, None when there is no journal. Raises JournalUnreadable."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_SIZE + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise JournalUnreadable(f"cannot read the print journal {self.path}: "
                                    f"{exc.strerror or exc}") from None
        if len(raw) > MAX_SIZE:
            raise JournalUnreadable(f"the print journal {self.path} is over {MAX_SIZE} bytes")
        try:
            data = json.loads(raw.decode("utf-8"))
        except RecursionError:
            raise JournalUnreadable(f"the print journal {self.path} nests too deep to be "
                                    "one") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise JournalUnreadable(f"the print journal {self.path} is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise JournalUnreadable(f"the print journal {self.path} is not a JSON object")
        return data

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def set_aside(self) -> str:
        """Rename a journal that cannot be used out of the way; returns its new path."""
        aside = f"{self.path}.bad-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(self.path, aside)
        return aside


def apply(file: JournalFile, action: Action) -> None:
    """Carry out one action (blocking: run it in a thread from trio)."""
    if action is None:
        return
    kind, data = action
    if kind == "write" and data is not None:
        file.write(data)
    elif kind == "clear":
        file.clear()


async def serve_journal(poll: Callable[[float, float], Action], file: JournalFile, *,
                        interval: float = POLL,
                        after: Callable[[Action], Awaitable[None]] | None = None,
                        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Ask `poll(now, wall_time)` every `interval` seconds and carry out what it returns, then
    call `after(action)` with each action carried out. A write that fails (disk full,
    read-only card) is logged once and never stops the print."""
    task_status.started()
    failing = False
    while True:
        await trio.sleep(interval)
        action = poll(trio.current_time(), time.time())
        if action is None:
            continue
        try:
            await trio.to_thread.run_sync(apply, file, action)
        except OSError as exc:
            if not failing:
                log.error("cannot write the print journal %s: %s (the print goes on; it "
                          "could not be recovered after a crash)", file.path, exc)
            failing = True
        else:
            failing = False
            if after is not None:
                await after(action)
