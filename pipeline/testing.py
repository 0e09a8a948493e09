"""Test doubles that are first-class code: `Pair` joins a HostCore to the virtual firmware
model in memory with a manual clock, so whole sessions (handshake, resends, timeouts, stages)
run as pure function calls in microseconds. Imported by tests/ and tools/ only.
"""

from __future__ import annotations

import math
from typing import Callable

from .chain import Pipeline
from .config import HostConfig
from .host import HostCore
from .virtual.firmware import FirmwareSpec, VirtualFirmware


class ManualClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Pair:
    """A host core and a firmware model wired back to back. `wire` records every chunk the
    host wrote; `events` every published (event, payload)."""

    def __init__(self, config: HostConfig, pipeline: Pipeline,
                 firmware: FirmwareSpec | None = None) -> None:
        self.clock = ManualClock()
        self.fw = VirtualFirmware(firmware or FirmwareSpec(), now=0.0)
        self.core = HostCore(config, pipeline, clock=self.clock)
        self.wire: list[bytes] = []
        self.events: list[tuple[str, dict]] = []
        self.received: list[str] = []
        self.core.listeners.append(lambda e, p: self.events.append((str(e), p)))
        self.core.line_listeners.append(self.received.append)

    def step(self) -> bool:
        """Move whatever can move now; True if anything did."""
        moved = False
        out = self.core.data_to_send()
        if out:
            self.core.on_written()
            self.wire.append(out)
            self.fw.receive_data(out, self.clock.now)
            moved = True
        back = self.fw.data_to_send(self.clock.now)
        if back:
            self.core.receive_data(back)
            moved = True
        return moved

    def run_until(self, predicate: Callable[[], bool], max_time: float = 600.0) -> None:
        """Step, advancing the clock to the next deadline when idle, until `predicate()`."""
        limit = self.clock.now + max_time
        while not predicate():
            if self.step():
                continue
            fw_next = self.fw.next_deadline()
            t = min(self.core.deadline, math.inf if fw_next is None else fw_next)
            if t == math.inf or t > limit:
                raise TimeoutError(f"stuck at t={self.clock.now:.3f}: nothing moves")
            self.clock.now = max(self.clock.now, t)
            self.core.handle_timeout()

    def connect(self) -> None:
        self.core.connect()
        self.run_until(lambda: self.core.operational or self.core.failed)
        self.run_until(lambda: self.core.idle or self.core.failed)

    def send(self, *lines: str) -> None:
        for line in lines:
            self.core.enqueue(line)
        self.run_until(lambda: self.core.idle or self.core.failed)

    def event_names(self) -> list[str]:
        return [e for e, _ in self.events]
