"""The event catalogue (EVENTS.md, pipeline/eventnames.py) end to end: every event printpipe
must emit outside the HTTP work is triggered for real (the service, over the built-in virtual
printer on a pty wherever the printer is involved), and each firing is checked for its name
and its payload keys: the required ones present, none outside PAYLOAD_KEYS.

The end of the file checks payloads hold only catalogue keys; the main tests
tolerate exactly those keys (`known_extra`) so that they still check everything else.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from catalogue_handlers import CUSTOM, STAGE_ID
from conftest import load_yaml

import pipeline.app.printers.runtime as runtime_module
from pipeline.app.printers.control import PrinterControl as Service
from pipeline.app.service import open_service
from pipeline.events.names import CUSTOM_EVENT_RE, PAYLOAD_KEYS, SCRIPT_EVENT_RE, Event
from pipeline.fanout.bus import BusEvent, EventBus, Subscription
from pipeline.link.printer import Printer
from pipeline.session.jobs import Outcome
from pipeline.session.states import PrinterState

TIMEOUT = 10.0  # seconds; generous, pty IO on a real clock

# ---------------------------------------------------------------------------------------------
# The catalogue's rules for payload keys

#: Keys EVENTS.md marks optional (`?`), and PrintFailed's `error` (PAYLOAD_KEYS lists it; it is
#: there only when the reason is "error", checked separately).
OPTIONAL_KEYS: dict[Event, frozenset[str]] = {
    Event.UPLOAD: frozenset({"userdata"}),
    Event.PRINT_CANCELLING: frozenset({"firmwareError"}),
    Event.PRINT_CANCELLED: frozenset({"position"}),
    Event.PRINT_PAUSED: frozenset({"position"}),
    Event.PRINT_FAILED: frozenset({"error"}),
    Event.ERROR: frozenset({"reason", "faq"}),
}

POSITION_KEYS = frozenset("xyzetf")

#: Keys beyond the catalogue the main tests tolerate (none since the catalogue lists them all).
PRINT_DONE_EXTRA = PRINT_FAILED_EXTRA = PRINT_PAUSED_EXTRA = frozenset[str]()
PRINT_CANCELLED_EXTRA = ERROR_EXTRA = frozenset[str]()


def required_keys(event: Event) -> frozenset[str]:
    return frozenset(PAYLOAD_KEYS[event]) - OPTIONAL_KEYS.get(event, frozenset())


def check_payload(ev: BusEvent, event: Event | None = None, *,
                  known_extra: Iterable[str] = ()) -> dict[str, Any]:
    """`ev` carries every required key of `event` (default: the event `ev` is) and no key
    outside its PAYLOAD_KEYS (but `known_extra`). Returns the payload."""
    event = Event(ev.name) if event is None else event
    keys = set(ev.payload)
    missing = required_keys(event) - keys
    assert not missing, f"{ev.name} lacks {sorted(missing)}: {ev.payload}"
    extra = keys - set(PAYLOAD_KEYS[event]) - set(known_extra)
    assert not extra, f"{ev.name} carries keys outside the catalogue {sorted(extra)}: {ev.payload}"
    if event is Event.PRINT_FAILED and ev.payload["reason"] == "error":
        assert ev.payload.get("error"), f"PrintFailed for an error says which: {ev.payload}"
    return ev.payload


def job_payload_ok(payload: dict[str, Any], name: str, path: str, size: int) -> None:
    assert (payload["name"], payload["path"], payload["origin"], payload["size"]) == \
        (name, path, "local", size)


# ---------------------------------------------------------------------------------------------
# Running the service and recording what the bus delivers


class Recorder:
    """Everything one bus subscription received, in order, with waits for a given event."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.events: list[BusEvent] = []
        self.closed = False

    async def _next(self) -> BusEvent | None:
        if self.closed:
            return None
        try:
            ev = await self.sub.receive()
        except trio.EndOfChannel:
            self.closed = True
            return None
        self.events.append(ev)
        return ev

    async def wait_for(self, name: str, where: Callable[[BusEvent], bool] | None = None,
                       timeout: float = TIMEOUT) -> BusEvent:
        """The first event `name` (matching `where`), received already or within `timeout`."""
        i = 0
        with trio.move_on_after(timeout):
            while True:
                for ev in self.events[i:]:
                    if ev.name == name and (where is None or where(ev)):
                        return ev
                i = len(self.events)
                if await self._next() is None:
                    break
        raise AssertionError(f"{name} was not published (within {timeout}s); "
                             f"the bus delivered {self.names()}")

    async def settle(self, seconds: float) -> None:
        """Receive whatever arrives during `seconds`."""
        with trio.move_on_after(seconds):
            while await self._next() is not None:
                pass

    async def rest(self) -> None:
        """After the service ended: the events still queued, up to Shutdown."""
        with trio.fail_after(TIMEOUT):
            while await self._next() is not None:
                pass

    def names(self) -> list[str]:
        return [ev.name for ev in self.events]

    def named(self, name: str) -> list[BusEvent]:
        return [ev for ev in self.events if ev.name == name]

    def one(self, name: str) -> BusEvent:
        found = self.named(name)
        assert len(found) == 1, f"{name} published {len(found)} times: {self.names()}"
        return found[0]

    def index(self, name: str) -> int:
        return self.names().index(name)


def config(serial: str = "", rest: str = ""):
    """Fast timeouts plus `serial` (lines indented under `serial:`) and other sections."""
    return load_yaml("serial:\n  timeouts:\n    communication: 0.5\n    temperature: 0.3\n"
                     "    resend_ok: 0.2\n" + serial + rest)


@asynccontextmanager
async def connected(serial: str = "", rest: str = ""):
    """A service connected to the virtual printer, and a recorder subscribed before the
    connect. After the block `await rec.rest()` collects the remaining events."""
    async with open_service(config(serial, rest)) as svc:
        rec = Recorder(svc.bus.subscribe("catalogue-test", size=100_000))
        await svc.connect()
        printer = svc.session
        yield svc, printer, rec


async def idle(printer: Printer) -> None:
    assert await printer.wait_idle(TIMEOUT), "the printer did not get idle"


def write_job(tmp_path, moves: int = 200, dwell_ms: int = 0) -> str:
    """A small job: home, first layer, an optional dwell (a window to pause or cancel in,
    signalled by the Dwelling event), then `moves` extruding moves."""
    text = "G28\nG1 Z0.3 F3000\n"
    if dwell_ms:
        text += f"G4 P{dwell_ms}\n"
    text += "".join(f"G1 X{i % 100} Y{(i * 7) % 100} E0.05\n" for i in range(moves))
    path = tmp_path / "job.gcode"
    path.write_text(text)
    return str(path)


async def run_print(tmp_path, *, serial: str = "", rest: str = "", dwell_ms: int = 0,
                    during: Callable[[Service, Printer, Recorder], Any] | None = None,
                    moves: int = 200) -> tuple[Recorder, dict[str, Any]]:
    """Select and print a job; `during(svc, printer, rec)` (async) runs once the Dwelling of the
    job was sent. Returns the recorder (service closed) and facts about the run."""
    path = write_job(tmp_path, moves, dwell_ms)
    async with connected(serial, rest) as (svc, printer, rec):
        svc.select(path, "folder/job.gcode", "job.gcode")
        await svc.start()
        if during is not None:
            await rec.wait_for("Dwelling")
            await during(svc, printer, rec)
        result = await printer.wait_job_end(TIMEOUT)
        assert result is not None, f"the job did not end: {rec.names()}"
        facts = {"result": result, "size": os.path.getsize(path)}
    await rec.rest()
    return rec, facts


# ---------------------------------------------------------------------------------------------
# Server: Startup, Shutdown


async def test_startup_is_the_first_event_and_shutdown_the_last(monkeypatch):
    subs: list[Subscription] = []

    class RecordingBus(EventBus):  # subscribed before open_service publishes Startup
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            subs.append(self.subscribe("catalogue-startup", size=100_000))

    monkeypatch.setattr(runtime_module, "EventBus", RecordingBus)
    async with open_service(config()) as svc:
        (sub,) = subs
        rec = Recorder(sub)
        startup = await rec.wait_for("Startup")
        assert rec.events == [startup]  # the first event
        await svc.connect()
        await rec.wait_for("Connected")
    await rec.rest()
    names = rec.names()
    assert names[-1] == "Shutdown" and names.count("Shutdown") == 1
    assert names.count("Startup") == 1
    assert names.index("Disconnected") < names.index("Shutdown")  # the session ends first
    for ev in (startup, rec.one("Shutdown")):
        assert check_payload(ev) == {}


async def test_startup_and_shutdown_reach_config_subscriptions(tmp_path):
    rest = f"""events:
  subscriptions:
    - event:
        - Startup
        - Shutdown
      command: touch {tmp_path}/seen-{{__eventname}}
      type: system
"""
    async with open_service(config(rest=rest)):
        with trio.fail_after(TIMEOUT):
            while not (tmp_path / "seen-Startup").exists():
                await trio.sleep(0.02)
    # leaving open_service gives the Shutdown command its grace period
    assert (tmp_path / "seen-Shutdown").exists()


# ---------------------------------------------------------------------------------------------
# Printer communication: Connecting, Connected, FirmwareData, Disconnecting, Disconnected,
# PrinterStateChanged, and the connect/disconnect scripts' GcodeScript* events


async def test_connect_and_orderly_disconnect_events():
    async with connected() as (svc, _, rec):
        await rec.wait_for("FirmwareData")
        await rec.wait_for("GcodeScriptAfterPrinterConnectedFinished")
        await svc.disconnect()
        await rec.wait_for("Disconnected")
    await rec.rest()
    names = rec.names()
    order = ["Connecting", "Connected", "FirmwareData", "Disconnecting", "Disconnected"]
    assert [names.index(n) for n in order] == sorted(names.index(n) for n in order), names
    for name in order:
        check_payload(rec.one(name))
    assert rec.one("Connected").payload == {"port": "virtual", "baudrate": 115200}
    fw = rec.one("FirmwareData").payload
    assert fw["name"].startswith("printpipe Virtual Marlin")
    assert fw["data"]["FIRMWARE_NAME"] == fw["name"] and fw["data"]["EXTRUDER_COUNT"] == "1"
    assert rec.one("Connecting").payload == rec.one("Disconnecting").payload == {}
    assert rec.one("Disconnected").payload == {}

    states = rec.named("PrinterStateChanged")
    for ev in states:
        p = check_payload(ev)
        assert p["state_string"] == PrinterState[p["state_id"]].value
    assert [ev.payload["state_id"] for ev in states] == ["CONNECTING", "OPERATIONAL", "OFFLINE"]
    assert names.index("Connecting") < names.index("Connected")
    assert states[1] in rec.events[:names.index("Connected") + 1]  # Operational, then Connected

    # the connect and disconnect scripts run (nothing configured: empty, events still fire),
    # carrying the triggering event's payload
    for script, trigger in (("AfterPrinterConnected", "Connected"),
                            ("BeforePrinterDisconnected", "Disconnecting")):
        running = rec.one(f"GcodeScript{script}Running")
        finished = rec.one(f"GcodeScript{script}Finished")
        assert SCRIPT_EVENT_RE.fullmatch(running.name) and SCRIPT_EVENT_RE.fullmatch(finished.name)
        assert names.index(trigger) < names.index(running.name) < names.index(finished.name)
        for ev in (running, finished):
            assert check_payload(ev, Event(trigger)) == rec.one(trigger).payload


# ---------------------------------------------------------------------------------------------
# Error


ERROR_CASES = {
    # a non-fatal firmware Error: with the default error_handling (disconnect)
    "firmware-error-line": ("", ["M118 Error:Heater is sulking"], "firmware", "Heater is sulking"),
    "emergency-stop": ("", ["M112"], "emergency", "emergency stop"),
    "port-vanished": ("virtual:\n  faults:\n    disconnect_after: 11\n",
                      [f"G1 X{i}" for i in range(12)], "connection", "closed"),
    "thermal-runaway": ("virtual:\n  faults:\n    fatal_after: 11\n",
                        [f"G1 X{i}" for i in range(12)], "firmware", "Thermal Runaway"),
}


async def error_run(case: str) -> Recorder:
    rest, lines, _, _ = ERROR_CASES[case]
    async with connected(rest=rest) as (_, printer, rec):
        await rec.wait_for("GcodeScriptAfterPrinterConnectedFinished")
        printer.send(lines)
        await rec.wait_for("Disconnected")
        assert printer.core.state is PrinterState.CLOSED_WITH_ERROR
    await rec.rest()
    return rec


@pytest.mark.parametrize("case", list(ERROR_CASES))
async def test_error(case):
    _, _, reason, text = ERROR_CASES[case]
    rec = await error_run(case)
    error = check_payload(rec.one("Error"), known_extra=ERROR_EXTRA)
    assert error["reason"] == reason and text in error["error"], error
    names = rec.names()
    assert names.index("Error") < names.index("Disconnected")
    states = [ev.payload["state_id"] for ev in rec.named("PrinterStateChanged")]
    assert states[-2:] == ["ERROR", "CLOSED_WITH_ERROR"]
    assert "Disconnecting" not in names  # not an orderly disconnect


# ---------------------------------------------------------------------------------------------
# PrinterReset


async def test_printer_reset_while_idle():
    async with connected(rest="virtual:\n  faults:\n    reset_after: 8\n") as (_, printer, rec):
        printer.send([f"G1 X{i}" for i in range(12)])
        reset = await rec.wait_for("PrinterReset")
        await idle(printer)
        assert printer.core.operational  # the link stays up
    await rec.rest()
    assert check_payload(reset) == {"idle": True}
    assert "Error" not in rec.names()


async def test_printer_reset_while_printing_fails_the_job(tmp_path):
    rec, facts = await run_print(tmp_path, rest="virtual:\n  faults:\n    reset_after: 60\n")
    assert facts["result"].outcome is Outcome.ERROR
    assert check_payload(rec.one("PrinterReset")) == {"idle": False}
    failed = check_payload(rec.one("PrintFailed"), known_extra=PRINT_FAILED_EXTRA)
    assert failed["reason"] == "error" and "reset" in failed["error"]
    job_payload_ok(failed, "job.gcode", "folder/job.gcode", facts["size"])
    assert rec.index("PrinterReset") < rec.index("PrintFailed")


# ---------------------------------------------------------------------------------------------
# FileSelected, FileDeselected, PrintStarted, PrintDone, scripts around a print


async def test_file_selected_and_deselected(tmp_path):
    path = write_job(tmp_path, 5)
    async with open_service(config()) as svc:
        rec = Recorder(svc.bus.subscribe("catalogue-test", size=1000))
        svc.select(path, "folder/job.gcode", "job.gcode")
        selected = await rec.wait_for("FileSelected")
        svc.deselect()
        deselected = await rec.wait_for("FileDeselected")
        svc.deselect()  # nothing selected any more: no second event
    await rec.rest()
    assert check_payload(selected) == {"name": "job.gcode", "path": "folder/job.gcode",
                                       "origin": "local"}
    assert check_payload(deselected) == {}
    assert rec.names().count("FileDeselected") == 1


async def test_print_started_and_done(tmp_path):
    rec, facts = await run_print(tmp_path)
    assert facts["result"].outcome is Outcome.DONE
    names = rec.names()
    started = check_payload(rec.one("PrintStarted"))
    job_payload_ok(started, "job.gcode", "folder/job.gcode", facts["size"])
    assert started["owner"] is None and "user" in started
    done = check_payload(rec.one("PrintDone"), known_extra=PRINT_DONE_EXTRA)
    job_payload_ok(done, "job.gcode", "folder/job.gcode", facts["size"])
    assert isinstance(done["time"], float) and 0 <= done["time"] < TIMEOUT
    assert names.index("FileSelected") < names.index("PrintStarted") < names.index("PrintDone")
    assert "PrintFailed" not in names
    states = [ev.payload["state_id"] for ev in rec.named("PrinterStateChanged")]
    i = states.index("STARTING")
    assert states[i:i + 4] == ["STARTING", "PRINTING", "FINISHING", "OPERATIONAL"]
    # the scripts of the print's moments fire their events with the moment's event payload
    for script, trigger, extra in (("BeforePrintStarted", Event.PRINT_STARTED, ()),
                                   ("AfterPrintDone", Event.PRINT_DONE, PRINT_DONE_EXTRA)):
        running = rec.one(f"GcodeScript{script}Running")
        finished = rec.one(f"GcodeScript{script}Finished")
        assert names.index(trigger.value) < names.index(running.name) < names.index(finished.name)
        for ev in (running, finished):
            assert check_payload(ev, trigger, known_extra=extra) == rec.one(trigger.value).payload


async def test_script_events_bracket_the_script_lines(tmp_path):
    """GcodeScript<Name>Running fires before the script's first line reaches the printer,
    ...Finished once its last line was acknowledged (so the printer has it)."""
    rest = "scripts:\n  gcode:\n    afterPrintDone: |\n      M117 done one\n      M117 done two\n"
    path = write_job(tmp_path, 50)
    async with connected(rest=rest) as (svc, printer, rec):
        fw = printer.virtual.firmware
        seen: list[tuple[str, list[str]]] = []
        printer.core.listeners.append(lambda e, p: seen.append((str(e), list(fw.accepted))))
        svc.select(path)
        await svc.start()
        await rec.wait_for("GcodeScriptAfterPrintDoneFinished")
    await rec.rest()
    at = dict(seen)
    assert "M117 done one" not in at["GcodeScriptAfterPrintDoneRunning"]
    assert at["GcodeScriptAfterPrintDoneFinished"][-2:] == ["M117 done one", "M117 done two"]


# ---------------------------------------------------------------------------------------------
# PrintPaused, PrintResumed


async def pause_then_resume(svc: Service, printer: Printer, rec: Recorder) -> None:
    printer.core.jobs.pause()
    await rec.wait_for("PrinterStateChanged", lambda ev: ev.payload["state_id"] == "PAUSED")
    printer.core.jobs.resume()


#: Runs several tests read (each reads the recorded events only, never the service): one run
#: per module and worker instead of one per test.
_RUNS: dict[str, tuple[Recorder, dict[str, Any]]] = {}


async def shared_run(name: str, tmp_path, **kwargs: Any) -> tuple[Recorder, dict[str, Any]]:
    if name not in _RUNS:
        _RUNS[name] = await run_print(tmp_path, **kwargs)
    return _RUNS[name]


async def paused_run(tmp_path) -> tuple[Recorder, dict[str, Any]]:
    return await shared_run("paused", tmp_path, dwell_ms=400, during=pause_then_resume)


async def test_print_paused_and_resumed(tmp_path):
    rec, facts = await paused_run(tmp_path)
    assert facts["result"].outcome is Outcome.DONE
    names = rec.names()
    paused = check_payload(rec.one("PrintPaused"), known_extra=PRINT_PAUSED_EXTRA)
    job_payload_ok(paused, "job.gcode", "folder/job.gcode", facts["size"])
    assert set(paused["position"]) == POSITION_KEYS  # log_position_on_pause (default)
    assert paused["position"]["z"] == 0.3
    resumed = check_payload(rec.one("PrintResumed"))
    job_payload_ok(resumed, "job.gcode", "folder/job.gcode", facts["size"])
    assert names.index("PrintPaused") < names.index("PrintResumed") < names.index("PrintDone")
    for script, trigger, extra in (("AfterPrintPaused", Event.PRINT_PAUSED, PRINT_PAUSED_EXTRA),
                                   ("BeforePrintResumed", Event.PRINT_RESUMED, ())):
        running = rec.one(f"GcodeScript{script}Running")
        finished = rec.one(f"GcodeScript{script}Finished")
        assert names.index(trigger.value) < names.index(running.name) < names.index(finished.name)
        for ev in (running, finished):
            check_payload(ev, trigger, known_extra=extra)


# ---------------------------------------------------------------------------------------------
# PrintCancelling, PrintCancelled, PrintFailed (cancelled)


async def cancel(svc: Service, printer: Printer, rec: Recorder) -> None:
    printer.core.jobs.cancel()


async def cancelled_run(tmp_path) -> tuple[Recorder, dict[str, Any]]:
    return await shared_run("cancelled", tmp_path, serial="  log_position_on_cancel: true\n",
                            dwell_ms=400, during=cancel)


async def test_print_cancelling_cancelled_and_failed(tmp_path):
    rec, facts = await cancelled_run(tmp_path)
    assert facts["result"].outcome is Outcome.CANCELLED
    names = rec.names()
    cancelling = check_payload(rec.one("PrintCancelling"))
    job_payload_ok(cancelling, "job.gcode", "folder/job.gcode", facts["size"])
    assert "firmwareError" not in cancelling  # cancelled by the user, not by an error
    cancelled = check_payload(rec.one("PrintCancelled"), known_extra=PRINT_CANCELLED_EXTRA)
    job_payload_ok(cancelled, "job.gcode", "folder/job.gcode", facts["size"])
    assert set(cancelled["position"]) == POSITION_KEYS and cancelled["position"]["z"] == 0.3
    assert isinstance(cancelled["time"], float)
    failed = check_payload(rec.one("PrintFailed"), known_extra=PRINT_FAILED_EXTRA)
    assert failed["reason"] == "cancelled"
    job_payload_ok(failed, "job.gcode", "folder/job.gcode", facts["size"])
    assert names.index("PrintCancelling") < names.index("PrintCancelled") < \
        names.index("PrintFailed")
    assert "PrintDone" not in names
    for ev in (rec.one("GcodeScriptAfterPrintCancelledRunning"),
               rec.one("GcodeScriptAfterPrintCancelledFinished")):
        check_payload(ev, Event.PRINT_CANCELLED, known_extra=PRINT_CANCELLED_EXTRA)
        assert names.index("PrintCancelled") < names.index(ev.name)


# ---------------------------------------------------------------------------------------------
# G-code events: fired by the gcode_events stage when the command was sent


SIMPLE_GCODE_EVENTS = [
    ("M80", Event.POWER_ON),
    ("M81", Event.POWER_OFF),
    ("G28", Event.HOME),
    ("G28 X Y", Event.HOME),
    ("G4 P20", Event.DWELL),
    ("M226 P4 S1", Event.WAITING),
    ("M245", Event.COOLING),
    ("M300 S440 P20", Event.ALERT),
    ("M240", Event.CONVEYOR),
    ("M40", Event.EJECT),
    ("M600", Event.FILAMENT_CHANGE),
    ("M701", Event.FILAMENT_CHANGE),
    ("M702", Event.FILAMENT_CHANGE),
]


@pytest.mark.parametrize(("line", "event"), SIMPLE_GCODE_EVENTS,
                         ids=[f"{line.split()[0]}-{event.value}"
                              for line, event in SIMPLE_GCODE_EVENTS])
async def test_gcode_event(line, event):
    async with connected() as (_, printer, rec):
        await rec.wait_for("GcodeScriptAfterPrinterConnectedFinished")
        printer.send([line, "M117 next"])
        ev = await rec.wait_for(event.value)
        await idle(printer)
        assert line in printer.virtual.firmware.accepted
        await rec.settle(0.05)
    await rec.rest()
    assert check_payload(ev) == {}
    assert rec.names().count(event.value) == 1


async def test_waiting_for_m0_and_m1_when_they_are_not_blocked():
    async with connected(serial="  blocked_commands:\n") as (_, printer, rec):
        printer.send(["M0", "M1"])
        first = await rec.wait_for("Waiting")
        await idle(printer)
        assert printer.virtual.firmware.accepted[-2:] == ["M0", "M1"]
    await rec.rest()
    assert check_payload(first) == {}
    assert len(rec.named("Waiting")) == 2 and "CommandSuppressed" not in rec.names()


async def test_g4_fires_dwelling_and_dwell_is_an_alias_subscriptions_may_use():
    rest = ("events:\n  subscriptions:\n    - event: Dwell\n"
            "      command: M117 dwelt {__eventname}\n      type: gcode\n")
    async with connected(rest=rest) as (_, printer, rec):
        fw = printer.virtual.firmware
        printer.send(["G4 P10"])
        dwell = await rec.wait_for("Dwelling")
        assert await printer.wait_until(lambda: "M117 dwelt Dwelling" in fw.accepted, TIMEOUT)
    await rec.rest()
    assert check_payload(dwell) == {} and "Dwell" not in rec.names()


async def test_zchange_on_a_new_z_only():
    async with connected() as (_, printer, rec):
        printer.send(["G1 Z0.3 F600", "G1 X5 Y5", "G1 Z0.6", "G0 Z0.6 X1", "G0 Z1", "G1 E2"])
        await idle(printer)
        await rec.settle(0.05)
    await rec.rest()
    changes = [check_payload(ev) for ev in rec.named("ZChange")]
    assert changes == [{"new": 0.3, "old": None}, {"new": 0.6, "old": 0.3},
                       {"new": 1.0, "old": 0.6}]


async def test_tool_change_on_a_new_tool_only():
    rest = "printer:\n  profile:\n    extruders: 2\n"
    async with connected(rest=rest) as (_, printer, rec):
        printer.send(["T1", "T1", "T0"])
        await idle(printer)
        assert printer.virtual.firmware.accepted[-3:] == ["T1", "T1", "T0"]
        await rec.settle(0.05)
    await rec.rest()
    changes = [check_payload(ev) for ev in rec.named("ToolChange")]
    assert changes == [{"old": 0, "new": 1}, {"old": 1, "new": 0}]
    assert "InvalidToolReported" not in rec.names()


async def test_gcode_events_fire_when_sent_not_when_queued():
    """M300 is queued behind a 0.8 s dwell (one command in flight): Alert comes when the dwell
    ended and M300 went out, not when it was queued; M0 (blocked) is never sent: no Waiting."""
    async with connected() as (_, printer, rec):
        await rec.wait_for("GcodeScriptAfterPrinterConnectedFinished")
        fw = printer.virtual.firmware
        printer.send(["G4 P800", "M300 S440 P10", "M0"])
        dwell = await rec.wait_for("Dwelling")
        await rec.settle(0.3)
        assert "Alert" not in rec.names()
        assert "M300 S440 P10" not in fw.accepted  # still queued on the host
        alert = await rec.wait_for("Alert")
        assert alert.time - dwell.time >= 0.7
        await idle(printer)
        assert fw.accepted[-2:] == ["G4 P800", "M300 S440 P10"]
        await rec.settle(0.05)
    await rec.rest()
    assert rec.one("CommandSuppressed").payload["command"] == "M0"
    assert "Waiting" not in rec.names()


async def test_estop_then_error():
    async with connected() as (_, printer, rec):
        printer.send(["M112"])
        await rec.wait_for("Disconnected")
        fw = printer.virtual.firmware
        with trio.fail_after(TIMEOUT):  # the pty server reads what the link wrote last
            while not fw.killed:
                await trio.sleep(0.01)
    await rec.rest()
    assert check_payload(rec.one("EStop")) == {}
    assert rec.index("EStop") < rec.index("Error")
    assert rec.one("Error").payload["reason"] == "emergency"


# ---------------------------------------------------------------------------------------------
# PositionUpdate, CommandSuppressed, InvalidToolReported


async def test_position_update_from_m114():
    async with connected() as (_, printer, rec):
        printer.send(["G28", "G1 X10 Y20 Z5 F1200", "G1 E1.5", "M114"])
        ev = await rec.wait_for("PositionUpdate")
    await rec.rest()
    assert check_payload(ev) == {"x": 10.0, "y": 20.0, "z": 5.0, "e": 1.5, "t": 0, "f": 1200.0}


SUPPRESSED = {
    "blocked": ("", "", "M0", "warn"),
    "ignored": ("  ignored_commands:\n    - M42\n", "", "M42 P4 S255", "info"),
    "no-heated-bed": ("", "printer:\n  profile:\n    heated_bed: false\n", "M140 S60", "warn"),
    "blocklist-stage": ("", ("pipeline:\n  comm.protocol.gcode.queuing:\n"
                             "    - stage: blocklist\n      with:\n        commands:\n"
                             "          - M300\n        mode: reject\n"),
                        "M300 S440", "error"),
}


@pytest.mark.parametrize("case", list(SUPPRESSED))
async def test_command_suppressed(case):
    serial, rest, line, severity = SUPPRESSED[case]
    async with connected(serial, rest) as (_, printer, rec):
        printer.send([line, "M117 after"])
        ev = await rec.wait_for("CommandSuppressed")
        await idle(printer)
        accepted = printer.virtual.firmware.accepted
        assert "M117 after" in accepted and line not in accepted
    await rec.rest()
    p = check_payload(ev)
    assert p["command"] == line and p["severity"] == severity and line in p["message"]
    assert "Alert" not in rec.names()


async def test_invalid_tool_reported_and_reverted():
    async with connected() as (_, printer, rec):  # one extruder
        printer.send(["T3"])
        ev = await rec.wait_for("InvalidToolReported")
        await idle(printer)
        accepted = printer.virtual.firmware.accepted
        assert accepted[accepted.index("T3"):] == ["T3", "T0"]  # back to the fallback
    await rec.rest()
    assert check_payload(ev) == {"tool": 3, "fallback": 0}


# ---------------------------------------------------------------------------------------------
# plugin_<stage id>_<name>: custom events


CUSTOM_YAML = f"""pipeline:
  events.register_custom_events:
    - handler: catalogue_handlers:custom_events
      id: {STAGE_ID}
  comm.protocol.action:
    - handler: catalogue_handlers:fire_custom_action
      id: {STAGE_ID}
events:
  subscriptions:
    - event: plugin_{STAGE_ID}_beeped
      command: M117 heard {{__eventname}} {{params}}
      type: gcode
"""


async def test_custom_plugin_event():
    async with connected(rest=CUSTOM_YAML) as (svc, printer, rec):
        names = [f"plugin_{STAGE_ID}_{n}" for n in CUSTOM]
        assert svc.custom_events() == names
        assert all(CUSTOM_EVENT_RE.fullmatch(n) for n in names)
        printer.send(["M118 // action:beeped twice"])
        ev = await rec.wait_for(f"plugin_{STAGE_ID}_beeped")
        fw = printer.virtual.firmware
        heard = f"M117 heard plugin_{STAGE_ID}_beeped twice"
        assert await printer.wait_until(lambda: heard in fw.accepted, TIMEOUT)
    await rec.rest()
    assert ev.payload == {"params": "twice", "line": "// action:beeped twice"}
    assert rec.names().count(ev.name) == 1


# ---------------------------------------------------------------------------------------------
# Every catalogue event is covered here or belongs to the HTTP/file work


HTTP_WORK = {Event.CLIENT_OPENED, Event.CLIENT_AUTHED, Event.CLIENT_CLOSED,
             Event.SETTINGS_UPDATED, Event.UPLOAD, Event.FILE_ADDED, Event.FILE_REMOVED,
             Event.FILE_MOVED, Event.FOLDER_ADDED, Event.FOLDER_REMOVED, Event.FOLDER_MOVED,
             Event.UPDATED_FILES, Event.METADATA_ANALYSIS_STARTED,
             Event.METADATA_ANALYSIS_FINISHED}
COVERED_HERE = {
    Event.STARTUP, Event.SHUTDOWN, Event.CONNECTING, Event.CONNECTED, Event.DISCONNECTING,
    Event.DISCONNECTED, Event.ERROR, Event.PRINTER_STATE_CHANGED, Event.FIRMWARE_DATA,
    Event.PRINTER_RESET, Event.FILE_SELECTED, Event.FILE_DESELECTED, Event.PRINT_STARTED,
    Event.PRINT_DONE, Event.PRINT_FAILED, Event.PRINT_CANCELLING, Event.PRINT_CANCELLED,
    Event.PRINT_PAUSED, Event.PRINT_RESUMED, Event.ESTOP, Event.Z_CHANGE, Event.TOOL_CHANGE,
    Event.POSITION_UPDATE, Event.COMMAND_SUPPRESSED, Event.INVALID_TOOL_REPORTED,
} | {event for _, event in SIMPLE_GCODE_EVENTS}


#: Published at start from a crash journal: tests/test_api_recovery.py fires it and checks it.
RECOVERY_WORK = {Event.PRINT_INTERRUPTED}
#: Uploads to the printer's SD card: tests/test_sd_host.py checks their payloads.
SD_WORK = {Event.TRANSFER_STARTED, Event.TRANSFER_DONE, Event.TRANSFER_FAILED}
#: The timelapse's: tests/test_timelapse_e2e.py fires each and checks its payload's keys.
TIMELAPSE_WORK = {Event.CAPTURE_START, Event.CAPTURE_DONE, Event.CAPTURE_FAILED,
                  Event.POST_ROLL_START, Event.POST_ROLL_END, Event.MOVIE_RENDERING,
                  Event.MOVIE_DONE, Event.MOVIE_FAILED}
ELSEWHERE = HTTP_WORK | RECOVERY_WORK | SD_WORK | TIMELAPSE_WORK


def test_every_catalogue_event_is_covered():
    assert set(Event) == COVERED_HERE | ELSEWHERE, set(Event) - COVERED_HERE - ELSEWHERE
    assert not COVERED_HERE & HTTP_WORK


# ---------------------------------------------------------------------------------------------
# Payloads carry only catalogue keys (OctoPrint's extras, user / fileposition / progress /
# faq, are in PAYLOAD_KEYS), and error_handling: cancel cancels with firmwareError


async def test_print_done_has_only_catalogue_keys(tmp_path):
    rec, _ = await run_print(tmp_path)
    check_payload(rec.one("PrintDone"))


async def test_print_failed_has_only_catalogue_keys(tmp_path):
    rec, _ = await cancelled_run(tmp_path)
    check_payload(rec.one("PrintFailed"))


async def test_print_paused_has_only_catalogue_keys(tmp_path):
    rec, _ = await paused_run(tmp_path)
    check_payload(rec.one("PrintPaused"))


async def test_print_cancelled_has_only_catalogue_keys(tmp_path):
    rec, _ = await cancelled_run(tmp_path)
    check_payload(rec.one("PrintCancelled"))


async def test_error_with_faq_tag_has_only_catalogue_keys():
    rec = await error_run("thermal-runaway")
    check_payload(rec.one("Error"))


async def test_firmware_error_cancels_the_print_with_firmware_error(tmp_path):
    async def firmware_error(svc: Service, printer: Printer, rec: Recorder) -> None:
        # manual commands go before the file's: the printer answers it after the dwell
        printer.send(["M118 Error:Heater is sulking"])

    rec, facts = await run_print(tmp_path, serial="  error_handling: cancel\n", dwell_ms=400,
                                 during=firmware_error, moves=600)
    assert "Error" not in rec.names()  # the link stays up in this mode
    assert facts["result"].outcome is Outcome.CANCELLED
    cancelling = check_payload(rec.one("PrintCancelling"))
    assert "Heater is sulking" in cancelling["firmwareError"]
