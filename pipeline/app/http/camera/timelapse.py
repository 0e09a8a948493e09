"""OctoPrint's timelapse endpoints for one printer: GET /api/timelapse (config, movies with
size/date/url, unrendered frame sets with `?unrendered=true`), POST /api/timelapse (the config
until the next reload), DELETE /api/timelapse/NAME, render or delete an unrendered set
(POST/DELETE /api/timelapse/unrendered/NAME) and the movies under /downloads/timelapse/NAME
(behind the same key check as the files API).
"""

from __future__ import annotations

import math

import attrs
import trio
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from pipeline.app.http.bodies import command as _command
from pipeline.app.http.context import api_of
from pipeline.app.http.support import BadRequest, read_json
from pipeline.camera.recorder import Camera
from pipeline.config.camera import TimelapseMode
from pipeline.timelapse import names
from pipeline.timelapse.plan import api_config


def _camera(request: Request) -> Camera:
    return api_of(request).control.camera


def _name(request: Request) -> str:
    name = request.path_params["name"]
    if not names.safe_name(name):
        raise BadRequest(f"{name!r} is not a timelapse file name", status=404)
    return name


async def get(request: Request) -> Response:
    camera = _camera(request)
    unrendered = request.query_params.get("unrendered", "").lower() in ("true", "1", "yes")
    base = str(request.base_url).rstrip("/")
    return JSONResponse(await trio.to_thread.run_sync(
        lambda: camera.listing(base, unrendered=unrendered)))


#: POST /api/timelapse's fields: OctoPrint's name -> (TimelapseSpec field, low, high).
_FIELDS = {"postRoll": ("post_roll", 0, 3600), "fps": ("fps", 1, 120),
           "interval": ("interval", 0.1, 3600), "retractionZHop": ("retraction_zhop", 0, 50),
           "minDelay": ("min_delay", 0, 3600)}


async def post(request: Request) -> Response:
    camera = _camera(request)
    body = await read_json(request)
    changes: dict[str, object] = {}
    if "type" in body:
        try:
            changes["mode"] = TimelapseMode(body["type"])
        except ValueError:
            raise BadRequest(f"type must be off, zchange or timed, not {body['type']!r}"
                             ) from None
    for key, (field, low, high) in _FIELDS.items():
        if key not in body:
            continue
        value = body[key]
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise BadRequest(f"{key} must be a number, not {value!r}") from None
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not math.isfinite(value) or not low <= value <= high):
            raise BadRequest(f"{key} must be a number from {low} to {high}, not {value!r}")
        changes[field] = int(value) if field == "fps" else float(value)
    camera.configure(attrs.evolve(camera.spec, **changes))  # type: ignore[arg-type]
    return await get(request)


async def delete(request: Request) -> Response:
    camera, name = _camera(request), _name(request)
    if not await trio.to_thread.run_sync(camera.store.delete_movie, name):
        raise BadRequest(f"no timelapse named {name!r}", status=404)
    return Response(status_code=204)


async def unrendered_command(request: Request) -> Response:
    camera, name = _camera(request), _name(request)
    _command(await read_json(request), ("render",))
    busy = camera.busy(name)
    if busy:
        raise BadRequest(f"{name!r} cannot be rendered now: {busy}", status=409)
    if not await trio.to_thread.run_sync(camera.store.frame_count, name):
        raise BadRequest(f"no unrendered timelapse named {name!r}", status=404)
    camera.renderer.queue(name, wait_for_print=False)
    return Response(status_code=204)


async def unrendered_delete(request: Request) -> Response:
    camera, name = _camera(request), _name(request)
    busy = camera.busy(name)
    if busy:
        raise BadRequest(f"{name!r} cannot be deleted now: {busy}", status=409)
    if not await trio.to_thread.run_sync(camera.store.delete_frames, name):
        raise BadRequest(f"no unrendered timelapse named {name!r}", status=404)
    return Response(status_code=204)


async def download(request: Request) -> Response:
    camera, name = _camera(request), _name(request)
    path = camera.store.movie_path(name)
    if path is None:
        raise BadRequest(f"no timelapse named {name!r}", status=404)
    return FileResponse(path, filename=name, media_type="application/octet-stream")


def webcam_settings(camera: Camera) -> dict[str, object]:
    """/api/settings' `webcam`, as OctoPrint reports it."""
    w, spec = camera.webcam, camera.spec
    return {"webcamEnabled": w.enabled, "timelapseEnabled": camera.active,
            "streamUrl": w.stream, "snapshotUrl": w.snapshot, "streamRatio": w.ratio,
            "streamTimeout": 5, "snapshotTimeout": math.ceil(w.snapshot_timeout),
            "snapshotSslValidation": w.ssl_validation, "ffmpegPath": spec.ffmpeg,
            "ffmpegThreads": spec.threads, "ffmpegVideoCodec": spec.video_codec,
            "bitrate": spec.bitrate, "watermark": False, "flipH": w.flip_h, "flipV": w.flip_v,
            "rotate90": w.rotate == 90, "rotate": w.rotate, "cacheBuster": True}


ROUTES: list[Route] = [
    Route("/api/timelapse", get, methods=["GET"]),
    Route("/api/timelapse", post, methods=["POST"]),
    Route("/api/timelapse/unrendered/{name}", unrendered_command, methods=["POST"]),
    Route("/api/timelapse/unrendered/{name}", unrendered_delete, methods=["DELETE"]),
    Route("/api/timelapse/{name}", delete, methods=["DELETE"]),
    Route("/downloads/timelapse/{name}", download, methods=["GET"]),
]


def timelapse_config(camera: Camera) -> dict[str, object] | None:
    """The push socket's `timelapse` message: the config, or None when no frames are taken."""
    return api_config(camera.spec) if camera.active else None
