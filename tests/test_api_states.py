"""`/api/job` and `/api/printer` in every state, shaped as OctoPrint 1.11 shapes them, against
a real server with the virtual printer: disconnected, selected but not printing, printing,
paused, done, cancelled, failed (printer error, printer gone). One row per state: how to get
there, then what each key of both answers must be.

OctoPrint's rules checked here: every key of the job answer is present (null when unknown);
the selected file is shown as soon as it is selected, not the last job; a finished print's
figures are frozen (100 %, the whole file, its time, nothing left); a cancelled or failed print
resets the progress to nulls; a closed connection has no file; heaters appear in
`/api/printer` only once the printer reported them; `state.error` is always there ("" when
there is none); `sd: {ready}` (SD support is on by default); `job.user` is who started the print."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
from http_fixtures import KEY, reported_temperatures, serve_for_test

from pipeline.virtual.pair import sample_gcode

SMALL = sample_gcode(200, seed=3)
LONG = sample_gcode(3000, seed=4)
SLOW = "virtual:\n  faults:\n    ok_delay: 0.002\n"
NULL_FILE = dict.fromkeys(("name", "path", "display", "origin", "size", "date"))
NULL_PROGRESS = dict.fromkeys(("completion", "filepos", "printTime", "printTimeLeft",
                               "printTimeLeftOrigin"))
JOB_KEYS = {"file", "estimatedPrintTime", "averagePrintTime", "lastPrintTime", "filament",
            "user"}


def integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def between(low: float, high: float) -> Callable[[object], bool]:
    return lambda v: isinstance(v, (int, float)) and low < v < high


async def upload(srv, name: str, text: str, **fields: str) -> None:
    r = await srv.client.post("/api/files/local", data=fields,
                              files={"file": (name, text.encode())})
    assert r.status_code == 201, r.text


async def job(srv) -> dict:
    r = await srv.client.get("/api/job")
    assert r.status_code == 200
    return r.json()


async def until_progress(srv, low: float) -> None:
    with trio.fail_after(20):
        while ((await job(srv))["progress"]["completion"] or 0) <= low:
            await trio.sleep(0.02)


# ---- how to get to each state ---------------------------------------------------------------
async def disconnected(srv, rec) -> None:
    """Was printing and selected; the printer was disconnected (OctoPrint deselects)."""
    await upload(srv, "gone.gcode", SMALL, print="true")
    await rec.wait_for("PrintDone", timeout=30)
    r = await srv.client.post("/api/connection", json={"command": "disconnect"})
    assert r.status_code == 204


async def selected(srv, rec) -> None:
    """A print of another file ended; then `b.gcode` was uploaded with select."""
    await upload(srv, "a.gcode", SMALL, print="true")
    await rec.wait_for("PrintDone", timeout=30)
    with trio.fail_after(10):
        while (await job(srv))["state"] != "Operational":
            await trio.sleep(0.02)
    await upload(srv, "b.gcode", SMALL + "G1 X1\n", select="true")


async def printing(srv, rec) -> None:
    await upload(srv, "long.gcode", LONG, print="true")
    await until_progress(srv, 5)


async def paused(srv, rec) -> None:
    await printing(srv, rec)
    r = await srv.client.post("/api/job", json={"command": "pause", "action": "pause"})
    assert r.status_code == 204
    await rec.wait_for("PrintPaused")
    with trio.fail_after(10):
        while (await job(srv))["state"] != "Paused":
            await trio.sleep(0.02)


async def done(srv, rec) -> None:
    await upload(srv, "small.gcode", SMALL, print="true")
    await rec.wait_for("PrintDone", timeout=30)
    with trio.fail_after(10):  # the history is written beside the print, a moment later;
        # Finishing (afterPrintDone) comes between PrintDone and Operational
        while ((body := await job(srv))["job"]["lastPrintTime"] is None
               or body["state"] != "Operational"):
            await trio.sleep(0.02)


async def cancelled(srv, rec) -> None:
    await printing(srv, rec)
    r = await srv.client.post("/api/job", json={"command": "cancel"})
    assert r.status_code == 204
    await rec.wait_for("PrintCancelled", timeout=30)
    with trio.fail_after(10):
        while (await job(srv))["state"] != "Operational":
            await trio.sleep(0.02)


async def printer_error(srv, rec) -> None:
    await upload(srv, "doomed.gcode", SMALL, print="true")
    await rec.wait_for("PrintFailed", timeout=30)
    with trio.fail_after(10):
        while srv.service.connected:
            await trio.sleep(0.02)


ACTIVE = {"completion": between(0, 100), "filepos": integer, "printTime": integer,
          "printTimeLeft": lambda v: v is None or integer(v),
          "printTimeLeftOrigin": lambda v: v in (None, "estimate")}
LONG_FILE = {"name": "long.gcode", "path": "long.gcode", "display": "long.gcode",
             "origin": "local", "size": len(LONG), "date": integer}

#: state: (config, setup, expected /api/job, expected /api/printer (None: 409))
STATES = {
    "disconnected": ("", disconnected, {
        "state": "Offline", "file": NULL_FILE, "progress": NULL_PROGRESS, "user": None,
        "error": None}, None),
    "selected, not printing": ("", selected, {
        "state": "Operational",
        "file": {"name": "b.gcode", "path": "b.gcode", "display": "b.gcode",
                 "origin": "local", "size": len(SMALL + "G1 X1\n"), "date": integer},
        "progress": NULL_PROGRESS, "user": "master", "error": None},
        {"text": "Operational", "operational": True, "ready": True, "printing": False}),
    "printing": (SLOW, printing, {
        "state": "Printing", "file": LONG_FILE, "progress": ACTIVE, "user": "master",
        "error": None},
        {"text": "Printing", "operational": True, "ready": False, "printing": True}),
    "paused": (SLOW, paused, {
        "state": "Paused", "file": LONG_FILE, "progress": ACTIVE, "user": "master",
        "error": None},
        {"text": "Paused", "operational": True, "paused": True, "printing": False}),
    "done": ("", done, {
        "state": "Operational",
        "file": {"name": "small.gcode", "path": "small.gcode", "display": "small.gcode",
                 "origin": "local", "size": len(SMALL), "date": integer},
        "progress": {"completion": 100, "filepos": len(SMALL), "printTime": integer,
                     "printTimeLeft": 0, "printTimeLeftOrigin": None},
        "user": "master", "error": None, "lastPrintTime": lambda v: v is not None},
        {"text": "Operational", "operational": True, "ready": True, "printing": False}),
    "cancelled": (SLOW, cancelled, {
        "state": "Operational", "file": LONG_FILE, "progress": NULL_PROGRESS,
        "user": "master", "error": None, "lastPrintTime": None},
        {"text": "Operational", "operational": True, "ready": True, "cancelling": False}),
    "printer error": ("virtual:\n  faults:\n    fatal_after: 50\n", printer_error, {
        "state": "Offline after error", "file": NULL_FILE, "progress": NULL_PROGRESS,
        "user": None, "error": lambda v: isinstance(v, str) and v != ""}, None),
    "printer gone": ("virtual:\n  faults:\n    disconnect_after: 50\n", printer_error, {
        "state": "Offline after error", "file": NULL_FILE, "progress": NULL_PROGRESS,
        "user": None, "error": lambda v: isinstance(v, str) and v != ""}, None),
}


def check(what: str, got, want) -> list[str]:
    """Differences between `got` and `want` (values, predicates, or dicts of them)."""
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return [(f"{what}: keys {sorted(got) if isinstance(got, dict) else got!r} "
                    f"!= {sorted(want)}")]
        return [d for k in want for d in check(f"{what}.{k}", got[k], want[k])]
    ok = want(got) if callable(want) else got == want and type(got) is type(want)
    return [] if ok else [f"{what}: {got!r} is not {getattr(want, '__name__', want)!r}"]


@pytest.mark.parametrize(("extra", "setup", "want_job", "want_printer"), STATES.values(),
                         ids=STATES.keys())
async def test_job_and_printer_answers_in_every_state(tmp_path, extra, setup, want_job,
                                                       want_printer):
    async with serve_for_test(tmp_path, extra) as srv:
        rec = srv.events(["PrintDone", "PrintPaused", "PrintCancelled", "PrintFailed"])
        if want_printer is not None:  # heaters show once reported: wait, to check them too
            await reported_temperatures(srv.client)
        await setup(srv, rec)
        body = await job(srv)
        problems = check("state", body["state"], want_job["state"])
        # (and `recovery` once a failed print's journal is offered: test_api_live_recovery.py)
        assert set(body) <= {"job", "progress", "state", "error", "recovery"}
        problems += check("error", body.get("error"), want_job["error"])
        assert set(body["job"]) == JOB_KEYS
        problems += check("job.file", body["job"]["file"], want_job["file"])
        problems += check("job.user", body["job"]["user"], want_job["user"])
        if "lastPrintTime" in want_job:
            problems += check("job.lastPrintTime", body["job"]["lastPrintTime"],
                              want_job["lastPrintTime"])
        problems += check("progress", body["progress"], want_job["progress"])
        r = await srv.client.get("/api/printer")
        if want_printer is None:
            assert r.status_code == 409, r.text
        else:
            assert r.status_code == 200
            printer = r.json()
            assert set(printer) == {"temperature", "state", "sd"}  # SD support is on
            assert printer["sd"] == {"ready": printer["state"]["flags"]["sdReady"]}
            state = printer["state"]
            assert set(state) == {"text", "flags", "error"} and state["error"] == ""
            problems += check("printer.state.text", state["text"], want_printer["text"])
            problems += [p for k, v in want_printer.items() if k != "text"
                         for p in check(f"flags.{k}", state["flags"][k], v)]
            for name in ("tool0", "bed"):
                assert set(printer["temperature"][name]) == {"actual", "target", "offset"}
                assert isinstance(printer["temperature"][name]["actual"], float)
        assert problems == []
        await cancel_if_running(srv, rec)


async def cancel_if_running(srv, rec) -> None:
    """A print still running when the server stops holds the stop until it drains (the whole
    file): cancel it first."""
    if (await job(srv))["state"] in ("Printing", "Paused"):
        r = await srv.client.post("/api/job", json={"command": "cancel"})
        assert r.status_code == 204
        await rec.wait_for("PrintCancelled", timeout=30)


#: prints for about 1.5 s, most of it in one dwell (the virtual printer waits it out)
DWELLING = sample_gcode(100, seed=5) + "G4 P1500\n" + sample_gcode(100, seed=6)


async def test_a_finished_print_keeps_its_times_and_a_running_one_counts(tmp_path):
    async with serve_for_test(tmp_path) as srv:
        rec = srv.events(["PrintDone", "PrintPaused"])
        await upload(srv, "dwell.gcode", DWELLING, print="true")
        with trio.fail_after(20):
            while ((body := await job(srv))["state"] != "Printing"
                   or not integer(body["progress"]["printTime"])):
                await trio.sleep(0.02)
        first = body["progress"]["printTime"]
        with trio.fail_after(10):  # counting while printing (whole seconds)
            while (body := await job(srv))["progress"]["printTime"] <= first:
                assert body["state"] == "Printing"  # not ended before it counted
                await trio.sleep(0.05)
        assert body["state"] == "Printing"
        await rec.wait_for("PrintDone", timeout=60)
        ended = (await job(srv))["progress"]
        await trio.sleep(1.1)
        assert (await job(srv))["progress"] == ended  # frozen once done


async def test_heaters_are_left_out_until_the_printer_reports_them(tmp_path):
    # the virtual printer's first report comes with its autoreport, after the handshake
    async with serve_for_test(tmp_path, connect=False) as srv:
        seen: list[dict] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(srv.service.connect)
            with trio.fail_after(15):
                while "bed" not in (seen or [{}])[-1]:
                    r = await srv.client.get("/api/printer")
                    if r.status_code == 200:
                        seen.append(r.json()["temperature"])
                    await trio.sleep(0.01)
        heaters = [t for temps in seen for t in temps.values()]
        assert heaters and all(isinstance(t["actual"], float) for t in heaters)
        assert all(t["target"] is None or isinstance(t["target"], float) for t in heaters)


async def test_the_job_user_is_who_started_it_not_who_asks(tmp_path):
    async with serve_for_test(tmp_path, SLOW) as srv:
        token = srv.api.keys.request("Slicer", None)
        other = srv.api.keys.approve(token).key
        r = await srv.client.post("/api/files/local", data={"select": "true"},
                                  files={"file": ("u.gcode", LONG.encode())},
                                  headers={"X-Api-Key": other})
        assert r.status_code == 201
        assert (await job(srv))["job"]["user"] == "Slicer"  # selected by the slicer's key
        r = await srv.client.post("/api/job", json={"command": "start"},
                                  headers={"X-Api-Key": KEY})
        assert r.status_code == 204
        for key in (KEY, other):
            got = await srv.client.get("/api/job", headers={"X-Api-Key": key})
            assert got.json()["job"]["user"] == "master"  # the master key started it
        await srv.client.post("/api/job", json={"command": "cancel"})
