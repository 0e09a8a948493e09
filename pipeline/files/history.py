"""The print history: one record per finished print (file, outcome, duration, end time, who
started it), kept in `<state folder>/history.json` and bounded to the newest MAX_RECORDS.

It feeds what OctoPrint derives from its own print log: a file's `prints` in `/api/files`
(successes, failures, the last print) and the job's `lastPrintTime` / `averagePrintTime`
(successful prints only, as OctoPrint counts them). The file is rewritten whole with
`write_atomically` once per print, so a crash leaves the old history or the new one; an
unreadable file is logged and starts an empty history. No trio here: the service calls
`record` from a worker thread (`trio.to_thread`), the reads come from memory.
"""

from __future__ import annotations

import enum
import json
import logging
import os
from collections.abc import Iterable
from typing import Any

import attrs

from pipeline.files.atomic import write_atomically

log = logging.getLogger("printpipe.history")

FILE_NAME = "history.json"
#: Records kept; the oldest go first. About 150 bytes each: 2000 are ~300 KB.
MAX_RECORDS = 2000
_TEMP_PREFIX = ".history-"


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"


@attrs.frozen
class PrintRecord:
    path: str               # the storage path (or the disk path of a print started elsewhere)
    outcome: Outcome
    duration: float         # seconds of printing, pauses excluded
    ended: float            # Unix time the print ended
    origin: str = "local"
    user: str | None = None

    @property
    def success(self) -> bool:
        return self.outcome is Outcome.SUCCESS

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "origin": self.origin, "outcome": self.outcome.value,
                "duration": self.duration, "ended": self.ended, "user": self.user}

    @classmethod
    def from_json(cls, item: Any) -> PrintRecord:
        """Raises ValueError (or KeyError, TypeError) for a record that is not one."""
        duration, ended = float(item["duration"]), float(item["ended"])
        if not isinstance(item["path"], str) or duration != duration or ended != ended:
            raise ValueError("bad record")
        user = item.get("user")
        return cls(item["path"], Outcome(item["outcome"]), duration, ended,
                   str(item.get("origin", "local")), user if isinstance(user, str) else None)


@attrs.frozen
class FileStatistics:
    """What the API shows of one file's prints."""

    success: int
    failure: int                      # failed and cancelled prints, as OctoPrint counts them
    last: PrintRecord | None
    last_print_time: float | None     # duration of the newest successful print
    average_print_time: float | None  # mean duration of the successful prints

    def prints(self) -> dict[str, Any] | None:
        """OctoPrint's `prints` object of a file entry, None when it was never printed."""
        if self.last is None:
            return None
        last: dict[str, Any] = {"date": self.last.ended, "success": self.last.success}
        if self.last.success:
            last["printTime"] = self.last.duration
        return {"success": self.success, "failure": self.failure, "last": last}


def folder_prints(children: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
    """A folder's `prints`: its children's counts summed, the newest `last` among them."""
    success = failure = 0
    last: dict[str, Any] | None = None
    for prints in children:
        if not prints:
            continue
        success += prints["success"]
        failure += prints["failure"]
        if "last" in prints and (last is None or prints["last"]["date"] > last["date"]):
            last = prints["last"]
    out: dict[str, Any] = {"success": success, "failure": failure}
    if last is not None:
        out["last"] = last
    return out


class PrintHistory:
    """The history of one state folder, loaded once and kept in memory."""

    def __init__(self, folder: str, *, limit: int = MAX_RECORDS) -> None:
        self.path = os.path.join(folder, FILE_NAME)
        self.limit = limit
        self.records: list[PrintRecord] = self._load()
        self._by_file = _index(self.records)

    def _load(self) -> list[PrintRecord]:
        try:
            with open(self.path, encoding="utf-8") as f:
                items = json.load(f)["prints"]
            return [PrintRecord.from_json(item) for item in items][-self.limit:]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s is unreadable (%s); the print history starts empty", self.path, exc)
            return []

    def record(self, rec: PrintRecord) -> None:
        """Add `rec` and rewrite the file (blocking IO: call it from a worker thread)."""
        self.records = [*self.records, rec][-self.limit:]
        self._by_file = _index(self.records)
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        data = json.dumps({"version": 1, "prints": [r.to_json() for r in self.records]},
                          separators=(",", ":")).encode("utf-8")
        write_atomically(self.path, data, prefix=_TEMP_PREFIX)

    def of(self, path: str, origin: str = "local") -> FileStatistics:
        """The statistics of the file at storage path `path`."""
        mine = self._by_file.get((origin, path), [])
        good = [r.duration for r in mine if r.success]
        last_good = next((r for r in reversed(mine) if r.success), None)
        return FileStatistics(
            success=len(good), failure=len(mine) - len(good), last=mine[-1] if mine else None,
            last_print_time=last_good.duration if last_good else None,
            average_print_time=sum(good) / len(good) if good else None)


def _index(records: list[PrintRecord]) -> dict[tuple[str, str], list[PrintRecord]]:
    """The records by (origin, path), oldest first: a listing asks once per file."""
    out: dict[tuple[str, str], list[PrintRecord]] = {}
    for r in records:
        out.setdefault((r.origin, r.path), []).append(r)
    return out
