"""Sessions in memory for the host tests: a `Pair` (pipeline.virtual.pair: the host core and the
virtual firmware back to back, on a manual clock) built from YAML with the built-in stages, a
print job fed from a text, and what the Pair recorded, read back by event. Not a test module."""

from __future__ import annotations

from typing import Any

from conftest import load_yaml

from pipeline.config.schema import FaultSpec
from pipeline.hooks.registry import build_pipeline
from pipeline.hooks.scripts import ScriptSet
from pipeline.protocol.engine import HostProtocol
from pipeline.session.filejob import FileJob, JobFile
from pipeline.virtual.pair import Pair
from stages import BUILTIN_STAGES

# Short communication and temperature timeouts: less manual-clock time to jump over in a print.
FAST = "serial:\n  timeouts:\n    communication: 1.0\n    temperature: 0.5\n"

# Jobs are fed in pieces this size, as the streamer reads them, so lines span two pieces.
CHUNK = 4096


def pair(yaml: str = "", *, faults: FaultSpec | None = None, scripts: ScriptSet | None = None,
         offsets: dict[str, float] | None = None, connect: bool = True) -> Pair:
    """A Pair configured by `yaml`, its pipeline built from the stages and handlers declared
    there; `faults` replace the configured `virtual.faults`. Connected (handshake done, queue
    idle) unless `connect=False`, which leaves room to swap the firmware first."""
    config = load_yaml(yaml)
    p = Pair(config, build_pipeline(config.pipeline, BUILTIN_STAGES), faults=faults,
             scripts=scripts, offsets=offsets)
    if connect:
        p.connect()
    return p


def file_job(text: str, name: str = "test.gcode") -> FileJob:
    """A job holding the whole of `text`, fed in CHUNK-sized pieces and then end of file: no
    streamer task runs beside a Pair."""
    data = text.encode()
    job = FileJob(JobFile(name, name, len(data)))
    for i in range(0, len(data), CHUNK):
        job.feed(data[i:i + CHUNK])
    job.feed(b"")
    return job


def start(p: Pair, text: str) -> FileJob:
    """Start printing `text` on `p`; it advances as `p.run_until(...)` steps the Pair."""
    job = file_job(text)
    p.core.jobs.start(job)
    return job


def payloads(p: Pair, event: str) -> list[dict[str, Any]]:
    """The payload of each `event` that `p` published, in order."""
    return [payload for name, payload in p.events if name == event]


def states(p: Pair, since: int = 0) -> list[str]:
    """The printer states `p` went through from its `since`-th event on (`len(p.events)` taken
    before an action gives the states that action caused)."""
    return [payload["state_id"] for name, payload in p.events[since:]
            if name == "PrinterStateChanged"]


def feed(e: HostProtocol, *lines: str, now: float = 1.0) -> list:
    """Every event the engine `e` makes of `lines` (each one reply line from the printer)."""
    events: list = []
    for line in lines:
        events += e.receive_data(line.encode() + b"\n", now)
    return events
