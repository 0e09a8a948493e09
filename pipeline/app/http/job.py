"""The job endpoints (`/api/job`): what is printing or selected with its progress and
analysis, and start / cancel / restart / pause commands; 409 when the state forbids one.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.app.http.printer import _command, _done, _field, _operational, printer_state
from pipeline.app.http.context import api_of, identity_of
from pipeline.app.http.support import BadRequest, read_json
from pipeline.session.jobs import JobStateError
from pipeline.session.states import PrinterState as S


async def job_get(request: Request) -> Response:
    api = api_of(request)
    printer = api.service.printer
    jobs = printer.core.jobs if printer else None
    job = jobs.job if jobs else None
    sel = api.service.selected
    file: dict[str, Any] = {"name": None, "path": None, "origin": None, "size": None,
                            "date": None, "display": None}
    if job is not None:
        f = job.file
        file.update(name=f.name, display=f.name, path=f.path, origin=f.origin, size=f.size)
    elif sel is not None:
        file.update(name=sel.name, display=sel.name, path=sel.path, origin=sel.origin,
                    size=sel.size)
    from pipeline.app.http.files import analysis_of
    analysis = analysis_of(api, file["path"]) if file["path"] else None
    progress: dict[str, Any] = {"completion": None, "filepos": None, "printTime": None,
                                "printTimeLeft": None, "printTimeLeftOrigin": None}
    if job is not None and jobs is not None:
        left = jobs.time_left()
        progress.update(completion=job.progress * 100, filepos=job.pos,
                        printTime=int(jobs.elapsed()),
                        printTimeLeft=int(left) if left is not None else None,
                        printTimeLeftOrigin="estimate" if left is not None else None)
    state = printer_state(request)
    out = {"job": {"file": file,
                   "estimatedPrintTime": analysis.get("estimatedPrintTime") if analysis else None,
                   "filament": analysis.get("filament") if analysis else None,
                   "lastPrintTime": None, "user": identity_of(request) if job else None},
           "progress": progress, "state": state["text"]}
    if "error" in state:
        out["error"] = state["error"]
    return JSONResponse(out)


async def job_post(request: Request) -> Response:
    api = api_of(request)
    body = await read_json(request)
    cmd = _command(body, ("start", "cancel", "restart", "pause"))
    printer = _operational(request)
    jobs = printer.core.jobs
    try:
        if cmd == "start":
            await api.service.start_print(user=identity_of(request))
        elif cmd == "cancel":
            jobs.cancel()
        elif cmd == "restart":
            if printer.core.state is not S.PAUSED:
                raise BadRequest("restart needs a paused print", status=409)
            jobs.cancel()
            await printer.wait_until(lambda: not jobs.active, 30, poll=0.05)
            await api.service.start_print(user=identity_of(request))
        else:
            action = _field(body, "action", str, required=False, default="toggle")
            if action not in ("pause", "resume", "toggle"):
                raise BadRequest(f"unknown pause action {action!r} (pause, resume, toggle)")
            if action == "toggle":
                action = "resume" if printer.core.state is S.PAUSED else "pause"
            if action == "pause":
                jobs.pause()
            else:
                jobs.resume()
    except JobStateError as exc:
        raise BadRequest(str(exc), status=409) from None
    printer.link.wake()
    return _done()


ROUTES = [
    Route("/api/job", job_get, methods=["GET"]),
    Route("/api/job", job_post, methods=["POST"]),
]
