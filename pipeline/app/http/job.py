"""The job endpoints (`/api/job`): what is printing or selected with its progress and
analysis, and start / cancel / restart / pause commands; 409 when the state forbids one.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.app.control import Status
from pipeline.app.http.bodies import command, done, field
from pipeline.app.http.context import Api, api_of, identity_of
from pipeline.app.http.files import analysis_of
from pipeline.app.http.printer import printer_state
from pipeline.app.http.support import BadRequest, read_json
from pipeline.session.jobs import JobStateError


async def job_get(request: Request) -> Response:
    api = api_of(request)
    return JSONResponse(job_payload(api, api.control.status(), identity_of(request)))


def job_payload(api: Api, status: Status, user: str) -> dict[str, Any]:
    """`/api/job`'s body for `status` (the push socket's `current` shares its parts)."""
    job, sel = status.job, status.selected
    file: dict[str, Any] = {"name": None, "path": None, "origin": None, "size": None,
                            "date": None, "display": None}
    if job is not None:
        f = job.file
        file.update(name=f.name, display=f.name, path=f.path, origin=f.origin, size=f.size)
    elif sel is not None:
        file.update(name=sel.name, display=sel.name, path=sel.path, origin=sel.origin,
                    size=sel.size)
    analysis = analysis_of(api, file["path"]) if file["path"] else None
    progress: dict[str, Any] = {"completion": None, "filepos": None, "printTime": None,
                                "printTimeLeft": None, "printTimeLeftOrigin": None}
    if job is not None:
        left = job.time_left
        progress.update(completion=job.progress * 100, filepos=job.filepos,
                        printTime=int(job.elapsed),
                        printTimeLeft=int(left) if left is not None else None,
                        printTimeLeftOrigin="estimate" if left is not None else None)
    state = printer_state(status)
    out: dict[str, Any] = {
        "job": {"file": file,
                "estimatedPrintTime": analysis.get("estimatedPrintTime") if analysis else None,
                "filament": analysis.get("filament") if analysis else None,
                "lastPrintTime": None, "user": user if job else None},
        "progress": progress, "state": state["text"]}
    if "error" in state:
        out["error"] = state["error"]
    if status.plugins:
        out["plugins"] = status.plugins  # printer.additional_state_data
    return out


async def job_post(request: Request) -> Response:
    api = api_of(request)
    body = await read_json(request)
    cmd = command(body, ("start", "cancel", "restart", "pause"))
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
