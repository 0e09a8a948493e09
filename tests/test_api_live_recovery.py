"""Recovery offered live, under `printpipe serve` (the service in this process, a real HTTP
server on 127.0.0.1, the virtual printer on a pty behind a symlink as a USB device node): the
port vanishing mid-print (the printer's `disconnect_after` fault: the node goes away; a fresh
printer is plugged back in) and the printer resetting mid-print (`reset_after`) each offer the
print's journal at once, without a restart: GET /api/job shows `recovery`, the event stream
carries PrintInterrupted with the journal, and POST /api/job recover (once the printer is
connected again) resumes it with no line skipped: every file line before the interruption,
the prologue, then the file from the first line the printer had not acknowledged."""

from __future__ import annotations

import json
from functools import partial

import pytest
import trio
from http_fixtures import Recorder, serve_for_test, serve_printers_for_test
from test_api_events import read_events
from test_api_recovery import stored_job, wait_until
from test_e2e_recovery import SESSION, check_resumed, job_text

from pipeline.app.printers import autoconnect
from pipeline.config.schema import FaultSpec, MarlinModelSpec, VirtualSpec
from pipeline.link.virtual import serve_virtual_printer
from pipeline.session.recovery import Journal
from pipeline.virtual.spec import FirmwareSpec

#: The file: heat, home, 80 moves with a layer change after 60.
TEXT = job_text(80)
#: The fault strikes after the printer executed this many commands (about 30 file lines in).
AT = 50
#: Seconds from the print's failure until GET /api/job offers it: the journal writer looks
#: every 0.25 s; "at once" with room for a loaded machine.
OFFERED_WITHIN = 2.0


def printer(marlin: bool = False, **faults: int) -> FirmwareSpec:
    """The virtual printer with fast heaters (the prologue waits for the journal's targets);
    `marlin`: Marlin's serial model (a move takes 2 ms; the host keeps four lines in flight)."""
    return FirmwareSpec(virtual=VirtualSpec(heat_rate=1000, faults=FaultSpec(**faults),
                                            marlin=MarlinModelSpec(marlin, move_time=0.002)))


def names(got: list) -> list[str]:
    return [n for n, _ in got]


async def print_until_offered(srv, got: list, state) -> Journal:
    """Print job.gcode until the fault ends it; check that GET /api/job offers the journal
    the print left, and the event stream carried it as PrintInterrupted, at once."""
    r = await srv.client.post("/api/files/local/job.gcode",
                              json={"command": "select", "print": True})
    assert r.status_code == 204
    await wait_until(lambda: "PrintFailed" in names(got))
    failed = trio.current_time()
    with trio.fail_after(OFFERED_WITHIN):
        while (shown := (await srv.client.get("/api/job")).json().get("recovery")) is None:
            await trio.sleep(0.02)
    await wait_until(lambda: "PrintInterrupted" in names(got),
                     OFFERED_WITHIN - (trio.current_time() - failed))
    journal = Journal.from_json(json.loads((state / "journal.json").read_text()))
    assert shown["problem"] is None and shown["file"]["path"] == "job.gcode"
    assert (shown["line"], shown["filepos"], shown["z"]) == (
        journal.line, journal.filepos, journal.state["z"])
    assert dict(got)["PrintInterrupted"] == json.loads(
        json.dumps({**journal.payload(), "printer": "default"}))
    return journal


@pytest.mark.parametrize(("fault", "marlin"), [
    ("disconnect_after", False), ("reset_after", False), ("disconnect_after", True),
    ("reset_after", True)], ids=["port-gone", "reset", "port-gone-marlin", "reset-marlin"])
async def test_an_interrupted_print_is_offered_at_once_and_resumed_without_a_restart(
        tmp_path, monkeypatch, fault, marlin):
    """(`marlin`: Marlin's serial model with four lines in flight, some of them lost.)"""
    monkeypatch.setattr(autoconnect, "PORT_POLL", 0.05)  # the re-plugged port, found sooner
    stored_job(tmp_path, TEXT)
    link = str(tmp_path / "ttyACM0")
    serial = "serial:\n  send_window: 4\n" if marlin else ""
    events = "/api/events?events=PrintFailed,PrintInterrupted"
    got: list = []
    async with trio.open_nursery() as nursery:
        first = await nursery.start(partial(serve_virtual_printer,
                                            printer(marlin, **{fault: AT}), link=link))
        firmwares = [first.firmware]
        async with (serve_for_test(tmp_path, serial, port=link) as srv,
                    srv.client.stream("GET", events) as stream,
                    trio.open_nursery() as reader):
            reader.start_soon(read_events, stream, got)
            await trio.sleep(0.1)  # the stream listens
            journal = await print_until_offered(srv, got, tmp_path / "state")
            if fault == "disconnect_after":  # the port is gone; then plugged back in
                await wait_until(lambda: not srv.service.operational)
                r = await srv.client.post("/api/job", json={"command": "recover"})
                assert r.status_code == 409  # not until it is connected again
                again = await nursery.start(partial(serve_virtual_printer, printer(marlin),
                                                    link=link))
                firmwares.append(again.firmware)
            await srv.wait_connected()
            done = srv.events(["PrintDone"])
            r = await srv.client.post("/api/job", json={"command": "recover"})
            assert r.status_code == 204, r.text
            await done.wait_for("PrintDone")
            assert "recovery" not in (await srv.client.get("/api/job")).json()
            srv.serving.stop()  # ends the stream; its reader returns
        nursery.cancel_scope.cancel()
    took = list(first.firmware.accepted)
    if fault == "reset_after":
        # between the reset and the host's M110 N0 the printer reads the rest of the lines
        # the reset cut in two (`1 X38 Y56 E1.700 F1800`; Marlin runs an unnumbered line
        # unchecked): bytes on the wire, not a line the host sent it
        took = took[:AT] + took[took.index("M110 N0", AT):]
    if len(firmwares) > 1:
        took += firmwares[1].accepted
    check_resumed(TEXT, [x for x in took if not x.startswith(SESSION)], journal)
    assert journal.state["z"] == 0.3 and 0 < journal.line < len(TEXT.splitlines()) - 10


async def test_each_printer_of_several_offers_its_own_interrupted_print(tmp_path):
    """Printers a and b print the same file; a resets mid-print. Only a offers the print
    (its journal in its own state folder), on its own API; b's print is done and offers
    nothing; a resumes it."""
    stored_job(tmp_path, TEXT)
    async with serve_printers_for_test(
            tmp_path, ("a", "b"), extra_yaml="virtual:\n  heat_rate: 1000\n",
            entry_yaml={"a": f"virtual:\n  faults:\n    reset_after: {AT}\n"}) as farm:
        ends = {name: Recorder(farm.control(name).bus.subscribe(
            "test", events=["PrintDone", "PrintFailed", "PrintInterrupted"], size=100))
            for name in ("a", "b")}
        async with farm.client("a") as a, farm.client("b") as b:
            for client in (a, b):
                r = await client.post("/api/files/local/job.gcode",
                                      json={"command": "select", "print": True})
                assert r.status_code == 204
            await ends["a"].wait_for("PrintInterrupted", OFFERED_WITHIN + 10)
            await ends["b"].wait_for("PrintDone")
            shown = (await a.get("/api/job")).json()["recovery"]
            assert shown["file"]["path"] == "job.gcode" and shown["problem"] is None
            assert "recovery" not in (await b.get("/api/job")).json()
            assert "PrintInterrupted" not in ends["b"].names()
            assert (tmp_path / "state" / "a" / "journal.json").exists()
            await wait_until(lambda: not (tmp_path / "state" / "b" / "journal.json").exists())
            assert (await b.post("/api/job", json={"command": "recover"})).status_code == 409
            r = await a.post("/api/job", json={"command": "recover"})
            assert r.status_code == 204, r.text
            await ends["a"].wait_for("PrintDone")
            assert "recovery" not in (await a.get("/api/job")).json()
