"""The job endpoints (`/api/job`): what is printing or selected with its progress and
analysis, and start / cancel / restart / pause commands; 409 when the state forbids one.
printpipe's own: `recovery` (a print a crash interrupted, when there is one) and the
`recover` command that resumes it.

The shapes are OctoPrint's for every state: every key present (null when unknown), the
selected file shown as soon as it is selected, a finished print's times frozen, the job's
user the one who started it, and `lastPrintTime` / `averagePrintTime` from the print history.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.app.http.bodies import command, done, field
from pipeline.app.http.context import Api, api_of, identity_of
from pipeline.app.http.files import files_of
from pipeline.app.http.printer import printer_state
from pipeline.app.http.support import BadRequest, read_json
from pipeline.app.printers.status import Status
from pipeline.files.storage import StorageError
from pipeline.session.jobs import JobStateError, Outcome

_FILE_KEYS = ("name", "path", "display", "origin", "size", "date")
_PROGRESS_KEYS = ("completion", "filepos", "printTime", "printTimeLeft", "printTimeLeftOrigin")


def _file_facts(api: Api, path: str) -> tuple[int | None, str | None, dict[str, Any]]:
    """(date, display name, gcodeAnalysis) of a storage file; None, None, {} when it is not
    one (a print started outside the storage folder, a file deleted since)."""
    try:
        entry = api.storage.entry(path)
    except StorageError:
        return None, None, {}
    meta = files_of(api).meta.get(entry.path, entry.stamp)
    return entry.date, meta.get("display"), meta.get("analysis") or {}


def job_of(api: Api, status: Status) -> dict[str, Any]:
    """OctoPrint's job information: the job running or ended (until another file is
    selected), else the selected file, else nulls; who started (or selected) it."""
    job, sel = status.job, status.selected
    info: tuple[str, str, str, int, str | None] | None = None
    if job is not None:
        f = job.file
        info = (f.name, f.path, f.origin, f.size, f.user)
    elif sel is not None:
        info = (sel.name, sel.path, sel.origin, sel.size, sel.user)
    elif (sd := api.control.sd.selected) is not None:  # selected on the card, not printed yet
        info = (sd.path, sd.path, "sdcard", sd.size, None)
    if info is None:
        return {"file": dict.fromkeys(_FILE_KEYS), "estimatedPrintTime": None,
                "averagePrintTime": None, "lastPrintTime": None, "filament": None,
                "user": None}
    name, path, origin, size, user = info
    date, display, analysis = (_file_facts(api, path) if origin == "local"
                               else (None, None, {}))
    history = api.control.history
    stats = history.of(path, origin) if history is not None else None
    return {"file": {"name": name, "path": path, "display": display or name, "origin": origin,
                     "size": size, "date": date},
            "estimatedPrintTime": analysis.get("estimatedPrintTime"),
            "averagePrintTime": stats.average_print_time if stats else None,
            "lastPrintTime": stats.last_print_time if stats else None,
            "filament": analysis.get("filament"), "user": user}


def progress_of(status: Status) -> dict[str, Any]:
    """OctoPrint's progress: live while printing; a finished print's figures frozen at its
    end (100 %, an integer there as in OctoPrint, the whole file, its time, none left); nulls
    without a job, after a cancel or a failure (as OctoPrint resets them)."""
    job = status.job
    if job is None or (job.result is not None and job.result.outcome is not Outcome.DONE):
        return dict.fromkeys(_PROGRESS_KEYS)
    if job.result is not None:
        return {"completion": 100, "filepos": job.file.size, "printTime": int(job.elapsed),
                "printTimeLeft": 0, "printTimeLeftOrigin": None}
    left = job.time_left if job.progress > 0 else None
    return {"completion": job.progress * 100, "filepos": job.filepos,
            "printTime": int(job.elapsed),
            "printTimeLeft": int(left) if left is not None else None,
            "printTimeLeftOrigin": "estimate" if left is not None else None}


async def job_get(request: Request) -> Response:
    api = api_of(request)
    status = api.control.status()
    state = printer_state(status)
    out: dict[str, Any] = {"job": job_of(api, status), "progress": progress_of(status),
                           "state": state["text"]}
    if state["error"]:
        out["error"] = state["error"]
    if status.plugins:
        out["plugins"] = status.plugins  # printer.additional_state_data
    recovery = api.control.interrupted_print()
    if recovery is not None:
        out["recovery"] = recovery
    return JSONResponse(out)


async def job_post(request: Request) -> Response:
    api = api_of(request)
    body = await read_json(request)
    cmd = command(body, ("start", "cancel", "restart", "pause", "recover"))
    control = api.control
    if not control.operational:
        raise BadRequest("the printer is not operational", status=409)
    try:
        if cmd == "start":
            await control.start(user=identity_of(request))
        elif cmd == "cancel":
            control.cancel()
        elif cmd == "restart":
            await control.restart(user=identity_of(request))
        elif cmd == "recover":
            await control.recover(user=identity_of(request))
        else:
            action = field(body, "action", str, required=False, default="toggle")
            if action not in ("pause", "resume", "toggle"):
                raise BadRequest(f"unknown pause action {action!r} (pause, resume, toggle)")
            {"pause": control.pause, "resume": control.resume,
             "toggle": control.toggle_pause}[action]()
    except JobStateError as exc:
        raise BadRequest(str(exc), status=409) from None
    return done()


ROUTES = [
    Route("/api/job", job_get, methods=["GET"]),
    Route("/api/job", job_post, methods=["POST"]),
]
