"""Keeping the printer connected, for `printpipe serve`: a printer switched on after the Pi
booted, re-plugged or power-cycled is connected when it (re)appears, without a restart.

While a session is wanted (from the start, and after any connect; a disconnect through the API
ends the wish) and none is open, the loop connects: a configured device path that does not
exist is watched (a stat every PORT_POLL seconds, so a USB port that appears is connected at
once); a failed connect, or a session that ended by itself, is retried after a delay that
doubles from RETRY_MIN up to RETRY_MAX. `PrinterControl.waiting` says what it waits for (GET
/api/connection shows it); each change is logged once, not at every retry.
"""

from __future__ import annotations

import logging
import os

import trio

from pipeline.app.printers.control import PrinterControl
from pipeline.errors import HostError

log = logging.getLogger("printpipe.connect")

#: Seconds between looks at a configured port that does not exist.
PORT_POLL = 0.5
#: Seconds before the first retry of a failed connect; doubled at each failure up to RETRY_MAX.
RETRY_MIN = 2.0
RETRY_MAX = 30.0
#: Seconds before reconnecting after a session that ended in an error (the error stays
#: visible in the status meanwhile).
AFTER_ERROR = 5.0  # (not after an unplug: the port is watched until it is back)


def _device(port: str) -> str | None:
    """The device path a port names (None for `auto` and `virtual`, which have none)."""
    return None if port in ("auto", "virtual") else port


def _exists(device: str) -> bool:
    return os.path.exists(device)  # a stat in /dev: never blocks for long


async def keep_connected(control: PrinterControl) -> None:
    """Connect now and whenever the session ends while one is wanted; runs until cancelled."""
    delay = RETRY_MIN
    said: str | None = None   # the last state logged, so a retry loop logs one line

    def note(text: str | None, level: int = logging.INFO) -> None:
        nonlocal said
        control.waiting_for(text)
        if text is not None and text != said:
            log.log(level, "%s%s", control.label, text)
        said = text

    while True:
        device = _device(control.config.printer.port)
        if control.connected or control.connecting:
            await control.wait_session_end()
            if control.wanted:
                error = control.last_error
                note(f"the printer connection ended ({error or 'closed'}): reconnecting",
                     logging.WARNING)
                delay = RETRY_MIN
                if error and (device is None or _exists(device)):  # not unplugged: wait
                    await trio.sleep(AFTER_ERROR)
            continue
        if not control.wanted:
            note(None)
            await trio.sleep(PORT_POLL)
            continue
        if device is not None and not _exists(device):
            note(f"waiting for {device} (switch the printer on, or plug it in)")
            await trio.sleep(PORT_POLL)
            continue
        try:
            await control.connect()
        except HostError as exc:
            note(f"could not connect: {exc}; retrying in {delay:g} s", logging.WARNING)
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            continue
        log.info("%sconnected to the printer on %s", control.label, control.config.printer.port)
        note(None)
        delay = RETRY_MIN
