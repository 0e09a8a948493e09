"""The Files endpoints (OctoPrint's `/api/files` model): list, upload or create a folder, one
entry's info, delete, and the select / move / copy commands; `/downloads/files/local/...` serves
a file. Uploads stream into a temp file in the storage folder and are renamed in; new files
(and listed files without one) get a background analysis (files/index.py's AnalysisQueue).

Path rules and file IO live in files/storage.py, metadata in files/index.py; this module maps
them to HTTP statuses and publishes the file events. Storage errors answer 400 (bad path or
name, too long), 404 (missing), 409 (exists or in use) or 415 (type not accepted); an upload
whose content is not G-code text answers 415 too, and is not stored.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, quote

import trio
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from pipeline.app.http.context import Api, api_of, identity_of
from pipeline.app.http.support import BadRequest, parse_json, read_json, receive_upload
from pipeline.events.names import Event
from pipeline.files.history import folder_prints
from pipeline.files.index import AnalysisQueue, Entry, MetadataStore
from pipeline.files.names import MAX_NAME_BYTES, MAX_PATH_BYTES, TEMP_PREFIX
from pipeline.files.storage import EntryExists, NoSuchEntry, StorageError, UnsupportedType
from pipeline.session.filejob import SNIFF, not_gcode
from pipeline.session.jobs import JobStateError

log = logging.getLogger("printpipe.files")

ORIGIN = "local"
_TRUE = frozenset(("true", "yes", "y", "on", "1"))
_FALSE = frozenset(("false", "no", "n", "off", "0", ""))
_UPDATED = {"type": "printables"}
_STATUSES = ((NoSuchEntry, 404), (EntryExists, 409), (UnsupportedType, 415), (StorageError, 400))


def files_of(api: Api) -> AnalysisQueue:
    """The files area's state (`api.extra["files"]`): the analysis queue and its metadata."""
    state = api.extra.get("files")
    if state is None:
        state = api.extra["files"] = AnalysisQueue(
            MetadataStore(api.storage.root), lambda path: api.storage.locate(path)[1],
            api.control.publish, lambda: _printing_path(api) is not None, origin=ORIGIN)
    return state


def queue_analysis(api: Api, entry: Entry) -> None:
    files_of(api).queue(api.nursery, entry)


# ---- helpers ---------------------------------------------------------------------------------
@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Storage refusals as HTTP answers."""
    try:
        yield
    except StorageError as exc:
        status = next(s for cls, s in _STATUSES if isinstance(exc, cls))
        raise BadRequest(str(exc), status=status) from None
    except OSError as exc:  # a name within the storage's limits but not the filesystem's
        if exc.errno != errno.ENAMETOOLONG:
            raise
        raise BadRequest(f"file name too long for the storage's filesystem (names are limited "
                         f"to {MAX_NAME_BYTES} bytes, paths to {MAX_PATH_BYTES})") from None


def _flag(value: Any, field: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise BadRequest(f"{field!r} must be true or false, got {value!r}")


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _under(path: str | None, rel: str) -> bool:
    return path is not None and (path == rel or path.startswith(rel + "/"))


def _local(request: Request) -> None:
    location = request.path_params.get("location", ORIGIN)
    if location != ORIGIN:
        raise BadRequest(f"no such file location {location!r} (local or sdcard)",
                         status=404)


def _refs(request: Request, entry: Entry) -> dict[str, str]:
    base = str(request.base_url)
    refs = {"resource": f"{base}api/files/{ORIGIN}/{quote(entry.path)}"}
    if not entry.is_folder:
        refs["download"] = f"{base}downloads/files/{ORIGIN}/{quote(entry.path)}"
    return refs


def _printing_path(api: Api) -> str | None:
    """The storage path of the file being printed (None when idle or not connected)."""
    path = api.control.printing_path
    if path is None:
        return None
    if os.path.isabs(path):  # started outside the storage API: compare where it is on disk
        real = os.path.realpath(path)
        if real.startswith(api.storage.root + os.sep):
            return os.path.relpath(real, api.storage.root).replace(os.sep, "/")
    return path


def _refuse_if_printing(api: Api, rel: str, what: str) -> None:
    if _under(_printing_path(api), rel):
        raise BadRequest(f"cannot {what} {rel!r}: it is being printed", status=409)


def abridged(request: Request, entry: Entry) -> dict[str, Any]:
    return {"name": entry.name, "path": entry.path, "origin": ORIGIN,
            "refs": _refs(request, entry)}


def describe(request: Request, entry: Entry) -> dict[str, Any]:
    """OctoPrint's file information model; analyses missing for listed files get queued."""
    api = api_of(request)
    out = abridged(request, entry)
    out.update(type=entry.type, typePath=list(entry.type_path), size=entry.size,
               date=entry.date)
    if entry.is_folder:
        out["display"] = entry.name
        if entry.children is not None:
            out["children"] = children = [describe(request, child) for child in entry.children]
            if api.control.history is not None:  # OctoPrint sums a listed folder's prints
                out["prints"] = folder_prints(child.get("prints") for child in children)
        return out
    history = api.control.history
    prints = history.of(entry.path, ORIGIN).prints() if history is not None else None
    if prints is not None:
        out["prints"] = prints
    meta = files_of(api).meta.get(entry.path, entry.stamp)
    out["display"] = meta.get("display", entry.name)
    if "analysis" in meta:
        out["gcodeAnalysis"] = meta["analysis"]
    else:
        queue_analysis(api, entry)
    if "userdata" in meta:
        out["userdata"] = meta["userdata"]
    return out


def _publish_file(api: Api, event: Event, entry: Entry) -> None:
    if entry.is_folder:
        api.control.publish(Event.FOLDER_ADDED if event is Event.FILE_ADDED
                            else Event.FOLDER_REMOVED,
                            {"storage": ORIGIN, "path": entry.path, "name": entry.name})
    else:
        api.control.publish(event, {"storage": ORIGIN, "path": entry.path, "name": entry.name,
                                    "type": list(entry.type_path)})


def _created(request: Request, body: dict[str, Any], entry: Entry) -> JSONResponse:
    return JSONResponse(body, status_code=201,
                        headers={"Location": _refs(request, entry)["resource"]})


# ---- endpoints -------------------------------------------------------------------------------
async def list_files(request: Request) -> Response:
    return JSONResponse(await local_listing(request))


async def local_listing(request: Request) -> dict[str, Any]:
    """The stored files as `/api/files/local` lists them (`/api/files` adds the SD card's:
    sd/endpoints.py), with the free and total space."""
    _local(request)
    api = api_of(request)
    recursive = _flag(request.query_params.get("recursive"), "recursive")
    with storage_errors():
        entries = await trio.to_thread.run_sync(partial(api.storage.listing,
                                                        recursive=recursive))
    free, total = await trio.to_thread.run_sync(api.storage.disk_usage)
    return {"files": [describe(request, e) for e in entries], "free": free, "total": total}


async def _small_form(request: Request, limit: int = 64 * 1024) -> dict[str, str]:
    body = bytearray()
    async with contextlib.aclosing(request.stream()) as stream:
        async for chunk in stream:
            body += chunk
            if len(body) > limit:
                raise BadRequest("form too large; upload files as multipart/form-data", status=413)
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


async def upload(request: Request) -> Response:
    _local(request)
    api = api_of(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":  # a folder needs no multipart
        fields = await _small_form(request)
        if "foldername" not in fields:
            raise BadRequest("the form has no 'foldername' field (and file uploads must be "
                             "multipart/form-data)")
        return _add_folder(request, api, fields)
    form = await receive_upload(request, api.storage.root, prefix=TEMP_PREFIX)
    try:
        if form.temp_path is not None:
            return await add_upload(request, api, form.filename, form.temp_path, form.fields)
        if "foldername" in form.fields:
            return _add_folder(request, api, form.fields)
        raise BadRequest("the form has neither a 'file' part nor a 'foldername' field")
    finally:
        form.discard()


def _add_folder(request: Request, api: Api, fields: Mapping[str, str]) -> Response:
    with storage_errors():
        parent = api.storage.normalize(fields.get("path", ""))
        entry = api.storage.add_folder(_join(parent, api.storage.sanitize(fields["foldername"])))
    _publish_file(api, Event.FILE_ADDED, entry)
    api.control.publish(Event.UPDATED_FILES, _UPDATED)
    return _created(request, {"done": True, "folder": abridged(request, entry)}, entry)


async def add_upload(request: Request, api: Api, filename: str | None, temp: str,
                      fields: Mapping[str, str]) -> Response:
    storage, state = api.storage, files_of(api)
    if not filename:
        raise BadRequest("the 'file' part has no filename")
    select, want_print = _flag(fields.get("select"), "select"), _flag(fields.get("print"), "print")
    userdata = None
    if "userdata" in fields:
        try:  # listings answer it: NaN, 1e400, deep nesting, lone surrogates are refused
            userdata = parse_json(fields["userdata"])
        except BadRequest as exc:
            raise BadRequest(f"'userdata': {exc.message}") from None
    with storage_errors():
        parent = storage.sanitize_path(fields.get("path", ""))  # as foldername: may be made
        name = storage.sanitize(filename)
        rel = _join(parent, name)
        _refuse_if_printing(api, rel, "overwrite")
        if storage.type_of(name) is not None:  # else add_upload names the wrong type
            await _refuse_binary(name, temp)
        new_folders = storage.missing_folders(parent)
        await trio.to_thread.run_sync(partial(storage.add_upload, rel, temp,
                                              allow_overwrite=True))
        entry = storage.entry(rel)
    state.meta.forget(rel)
    display = os.path.basename(filename.replace("\\", "/"))
    if display != entry.name or userdata is not None:
        state.meta.update(rel, entry.stamp, display=display,
                          **({"userdata": userdata} if userdata is not None else {}))
    for folder in new_folders:
        _publish_file(api, Event.FILE_ADDED, storage.entry(folder))
    _publish_file(api, Event.FILE_ADDED, entry)
    api.control.publish(Event.UPDATED_FILES, _UPDATED)

    full = storage.locate(rel)[1]
    effective_select = effective_print = False
    if (select or want_print) and _printing_path(api) is None:
        api.control.select(full, rel, entry.name, user=identity_of(request))
        effective_select = True
        if want_print:
            try:
                await api.control.start(user=identity_of(request))
                effective_print = True
            except JobStateError as exc:
                log.info("uploaded %s is selected but not printed: %s", rel, exc)
    elif api.control.selected is not None and api.control.selected.path == rel:
        # same file, new content: refresh its size
        api.control.select(full, rel, entry.name, user=api.control.selected.user)
    payload = {"name": entry.name, "path": rel, "target": ORIGIN, "select": select,
               "print": want_print, "effective_select": effective_select,
               "effective_print": effective_print}
    if userdata is not None:
        payload["userdata"] = userdata
    api.control.publish(Event.UPLOAD, payload)
    queue_analysis(api, entry)
    local = dict(abridged(request, entry), display=display)
    return _created(request, {"done": True, "files": {ORIGIN: local},
                              "effectiveSelect": effective_select,
                              "effectivePrint": effective_print}, entry)


async def _refuse_binary(name: str, temp: str) -> None:
    async with await trio.open_file(temp, "rb") as f:
        refused = not_gcode(name, await f.read(SNIFF))
    if refused is not None:
        raise BadRequest(refused, status=415)


async def file_info(request: Request) -> Response:
    _local(request)
    api = api_of(request)
    recursive = _flag(request.query_params.get("recursive"), "recursive")
    with storage_errors():
        entry = await trio.to_thread.run_sync(partial(
            api.storage.entry, request.path_params["path"], depth=-1 if recursive else 1))
    return JSONResponse(describe(request, entry))


async def delete(request: Request) -> Response:
    _local(request)
    api = api_of(request)
    with storage_errors():
        entry = api.storage.entry(request.path_params["path"])
        _refuse_if_printing(api, entry.path, "delete")
        if entry.is_folder:
            await trio.to_thread.run_sync(api.storage.remove_folder, entry.path)
        else:
            api.storage.remove_file(entry.path)
    files_of(api).meta.forget(entry.path)
    _publish_file(api, Event.FILE_REMOVED, entry)
    selected = api.control.selected
    if selected is not None and _under(selected.path, entry.path):
        api.control.deselect()
    api.control.publish(Event.UPDATED_FILES, _UPDATED)
    return Response(status_code=204)


async def command(request: Request) -> Response:
    _local(request)
    api = api_of(request)
    body = await read_json(request)
    name = body.get("command")
    if not isinstance(name, str):
        raise BadRequest("'command' is required: select, unselect, move or copy")
    with storage_errors():
        if name == "unselect":
            return _unselect(api, request.path_params["path"])
        entry = api.storage.entry(request.path_params["path"])
        if name == "select":
            return await _select(api, entry, _flag(body.get("print"), "print"),
                                 identity_of(request))
        if name in ("move", "copy"):
            return await _move_or_copy(request, api, entry, name, body.get("destination"))
    raise BadRequest(f"unknown command {name!r} (known: select, unselect, move, copy)")


def _unselect(api: Api, path: str) -> Response:
    selected = api.control.selected
    if selected is None:
        raise BadRequest("no file is selected", status=409)
    if path not in ("current", selected.path):
        raise BadRequest(f"{path!r} is not the selected file ({selected.path!r})")
    if _printing_path(api) is not None:
        raise BadRequest("a print is running", status=409)
    api.control.deselect()
    return Response(status_code=204)


async def _select(api: Api, entry: Entry, want_print: bool, user: str) -> Response:
    if entry.is_folder:
        raise BadRequest(f"{entry.path!r} is a folder; only files can be selected")
    if _printing_path(api) is not None:
        raise BadRequest("a print is running; select a file when it has ended", status=409)
    api.control.select(api.storage.locate(entry.path)[1], entry.path, entry.name, user=user)
    if want_print:
        try:
            await api.control.start(user=user)
        except JobStateError as exc:
            raise BadRequest(f"selected, but cannot print: {exc}", status=409) from None
    return Response(status_code=204)


async def _move_or_copy(request: Request, api: Api, entry: Entry, name: str,
                        destination: Any) -> Response:
    storage = api.storage
    if not isinstance(destination, str):
        raise BadRequest(f"{name}: 'destination' (a folder or a new path) is required")
    # OctoPrint's rule: an existing folder receives the entry; anything else is the new path
    dest = storage.normalize(destination)
    if not dest or storage.is_folder(dest):
        dest = _join(dest, entry.name)
    if name == "move":
        _refuse_if_printing(api, entry.path, "move")
        source, new = storage.move(entry.path, dest)
    else:
        source, new = await trio.to_thread.run_sync(storage.copy, entry.path, dest)

    def stat_of(path: str) -> os.stat_result | None:
        with contextlib.suppress(OSError, StorageError):
            return os.stat(storage.locate(path)[1])
        return None
    files_of(api).meta.carry(source.path, new.path, stat_of, keep_source=name == "copy")
    selected = api.control.selected
    if name == "move" and selected is not None and _under(selected.path, source.path):
        moved = new.path + selected.path[len(source.path):]
        api.control.select(storage.locate(moved)[1], moved, os.path.basename(moved),
                           user=selected.user)
    if name == "copy":
        _publish_file(api, Event.FILE_ADDED, new)
    elif new.is_folder:
        api.control.publish(Event.FOLDER_MOVED, {
            "storage": ORIGIN, "source_path": source.path, "source_name": source.name,
            "destination_path": new.path, "destination_name": new.name})
    else:
        api.control.publish(Event.FILE_MOVED, {
            "storage": ORIGIN, "source_path": source.path, "source_name": source.name,
            "source_type": list(source.type_path), "destination_path": new.path,
            "destination_name": new.name, "destination_type": list(new.type_path)})
    api.control.publish(Event.UPDATED_FILES, _UPDATED)
    return _created(request, abridged(request, new), new)


async def download(request: Request) -> Response:
    _local(request)
    api = api_of(request)
    with storage_errors():
        entry = api.storage.entry(request.path_params["path"])
        if entry.is_folder:
            raise BadRequest(f"{entry.path!r} is a folder", status=404)
        full = api.storage.locate(entry.path)[1]
    return FileResponse(full, filename=entry.name, media_type="application/octet-stream")


ROUTES: list[Route] = [
    Route("/api/files", list_files, methods=["GET"]),
    Route("/api/files/{location}", list_files, methods=["GET"]),
    Route("/api/files/{location}", upload, methods=["POST"]),
    Route("/api/files/{location}/{path:path}", file_info, methods=["GET"]),
    Route("/api/files/{location}/{path:path}", delete, methods=["DELETE"]),
    Route("/api/files/{location}/{path:path}", command, methods=["POST"]),
    Route("/downloads/files/{location}/{path:path}", download, methods=["GET"]),
]
