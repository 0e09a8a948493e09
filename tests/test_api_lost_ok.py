"""A lost ok of a long command under `printpipe serve` with its defaults (the service in this
process, the virtual printer on a pty, which reports Cap:BUSY_PROTOCOL:1): the busy period
(`serial.timeouts.communication_busy`, 3 s, and at least the temperature autoreport interval
plus a second) applies from the command's first line, so the lost ok of a G28 costs about
3 s, under 4 s, never the 30 s communication timeout. (The engine's own tests, on the
in-memory pair, show busy lines and M109's heat-up reports pushing the deadline on:
tests/test_deadlines.py. One case here: the wait is real, about 3 s.)"""

from __future__ import annotations

from functools import partial

import trio
from http_fixtures import serve_for_test

from pipeline.link.virtual import serve_virtual_printer
from pipeline.virtual.spec import FirmwareSpec

#: The acceptance's figure for a lost ok of G28, M109 or M190 with the busy protocol.
WITHIN = 4.0


def lose_the_ok_of(firmware, command: str) -> list[float]:
    """Make `firmware` lose the ok of the first `command` it executes (its lost-ok fault,
    aimed at one command); the list gets the time it was lost."""
    lost: list[float] = []
    finish = firmware._finish

    def aimed(ok: str, now: float) -> None:
        if not lost and firmware.accepted[-1] == command:
            lost.append(trio.current_time())
            return
        finish(ok, now)
    firmware._finish = aimed
    return lost


async def test_a_lost_ok_of_g28_costs_under_4_s(tmp_path):
    link = str(tmp_path / "ttyACM0")
    async with trio.open_nursery() as nursery:
        printer = await nursery.start(partial(serve_virtual_printer, FirmwareSpec(), link=link))
        lost = lose_the_ok_of(printer.firmware, "G28")
        async with serve_for_test(tmp_path, port=link) as srv:
            r = await srv.client.post("/api/printer/command", json={"command": "G28"})
            assert r.status_code == 204
            assert await srv.service.wait_idle(10.0)  # acknowledged: the probe's ok
            cost = trio.current_time() - lost[0]
            srv.serving.stop()
        nursery.cancel_scope.cancel()
    assert cost < WITHIN, f"the lost ok of G28 cost {cost:.2f} s"
    assert printer.firmware.accepted.count("G28") == 1  # probed, not sent again
