"""`printpipe sd list|upload|print|delete`: the printer's SD card from the command line, on
the configured printer (`--printer NAME` of several), through its control's `sd`. Each
connects, waits for the card (SD_WAIT s) and reads its listing, then: `list` prints one line
per file (name on the card, size, long name); `upload FILE` copies a G-code file to the card
and waits for it to be there; `print NAME` prints a file from the card and follows it as
`printpipe print` does (Ctrl-C cancels it); `delete NAME` removes one. A missing or non-G-code
FILE exits 2 before anything connects; a card that is off, missing or refuses exits 1 with
the reason.
"""

from __future__ import annotations

import os
import sys
from functools import partial
from typing import TextIO

import trio

from pipeline.app.cli.interrupts import Interrupts
from pipeline.app.cli.printing import _follow, _stop_now, unprintable
from pipeline.app.printers.control import PrinterControl
from pipeline.app.service import duration, open_service
from pipeline.config.reader import HostConfig
from pipeline.link.serial import LAST_ACT
from pipeline.session.jobs import JobStateError

#: Seconds to wait for the card to be mounted and listed, a deletion, a print to start.
SD_WAIT = 10.0
ACTIONS = ("list", "upload", "print", "delete")


async def run_sd(config: HostConfig, action: str, arg: str | None, interrupts: Interrupts, *,
                 out: TextIO = sys.stdout) -> int:
    if action != "list" and not arg:
        print(f"printpipe sd {action}: give the {'file' if action == 'upload' else 'name'}",
              file=sys.stderr)
        return 2
    refused = await unprintable(arg) if action == "upload" and arg else None
    if refused is not None:
        print(f"printpipe: {refused}", file=sys.stderr)
        return 2
    async with open_service(config) as control:
        interrupts.on_first = partial(_stop_now, control, interrupts, out)
        interrupts.last_words = partial(control.cut, LAST_ACT + 0.5)
        await control.connect()
        return await sd_action(control, action, arg, interrupts, out=out)


async def sd_action(control: PrinterControl, action: str, arg: str | None,
                    interrupts: Interrupts, *, out: TextIO = sys.stdout) -> int:
    """`action` on the connected printer's card; the exit code."""
    sd = control.sd
    if not sd.enabled:
        print("printpipe: SD support is off (serial.sd.enabled)", file=sys.stderr)
        return 1
    if not await sd.wait_until(lambda: sd.ready, SD_WAIT):
        print(f"printpipe: the printer's SD card is not ready after {SD_WAIT:g} s (no card, "
              "or it did not mount)", file=sys.stderr)
        return 1
    try:
        sd.refresh()
        await control.wait_idle(SD_WAIT)  # the listing came before the M20's ok
        if action == "list":
            for f in sd.files:
                long = f"  {f.display}" if f.display and f.display != f.path else ""
                print(f"{f.path:<12} {f.size:>10}{long}", file=out)
            return 0
        assert arg is not None
        if action == "upload":
            return await _upload(control, arg, out)
        if action == "delete":
            sd.delete(arg)
            await control.wait_idle(SD_WAIT)
            if not await sd.wait_until(lambda: sd.find(arg) is None, SD_WAIT):
                print(f"printpipe: the printer did not delete {arg}", file=sys.stderr)
                return 1
            print(f"deleted {arg} from the SD card", file=out)
            return 0
        sd.select(arg, print_after=True, user="cli")
        if not await sd.wait_until(lambda: control.status().printing, SD_WAIT):
            print(f"printpipe: the printer did not start printing {arg} from the SD card",
                  file=sys.stderr)
            return 1
        return await _follow(control, out, arg, interrupts)
    except LookupError as exc:
        print(f"printpipe: {exc.args[0]}", file=sys.stderr)
        return 1
    except JobStateError as exc:
        print(f"printpipe: {exc}", file=sys.stderr)
        return 1


async def _upload(control: PrinterControl, path: str, out: TextIO) -> int:
    start = trio.current_time()
    remote = await control.sd.upload(path, name=os.path.basename(path))
    print(f"uploading {path} to the SD card as {remote}", file=out, flush=True)
    last = await control.sd.wait_upload(float("inf"))
    if last is None or last[2]:
        why = last[2] if last else "the printer disconnected"
        print(f"printpipe: the upload of {path} failed: {why}", file=sys.stderr)
        return 1
    size = (await trio.Path(path).stat()).st_size
    print(f"uploaded {path} as {remote}: {size} bytes in "
          f"{duration(trio.current_time() - start)}", file=out)
    return 0
