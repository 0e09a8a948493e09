"""The snapshots the control surface answers with: the selected file, the job's progress and
the printer's whole status at one moment. Frozen values: the edges (HTTP, MQTT, the push
socket, the CLI) read them and never reach into the session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from pipeline.session.filejob import JobFile
from pipeline.session.jobs import JobResult
from pipeline.session.states import PrinterState


@attrs.frozen
class Selection:
    """The file selected for printing: `path` as events and the API show it, `disk` on disk."""

    name: str
    path: str
    disk: str
    size: int
    origin: str = "local"
    user: str | None = None     # who selected it (the job's user until someone starts it)

    def payload(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "origin": self.origin}


@attrs.frozen
class JobStatus:
    file: JobFile
    progress: float             # 0..1
    filepos: int                # bytes of the file consumed
    lines: int                  # file lines handed to the printer
    elapsed: float              # seconds, pauses excluded; frozen once the job has a result
    time_left: float | None
    active: bool                # still in a job state (not done, cancelled or failed)
    result: JobResult | None = None  # how it ended, once it has


@attrs.frozen
class Status:
    """The printer as the edges show it, read at one moment."""

    state: PrinterState
    connected: bool             # a printer session is open
    error: str | None
    temperatures: Mapping[str, Mapping[str, float | None]]  # tool0.., bed, chamber (+ offset)
    job: JobStatus | None
    selected: Selection | None
    plugins: Mapping[str, Any]  # printer.additional_state_data, by stage id
    #: Why there is no printer session yet ("waiting for /dev/ttyACM0"), from `printpipe serve`.
    waiting: str | None = None

    @property
    def printing(self) -> bool:
        return self.job is not None and self.job.active
