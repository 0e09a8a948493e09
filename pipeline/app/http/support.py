"""HTTP plumbing for the Starlette app: path normalising and body-limit ASGI middleware, JSON error
bodies, a streaming multipart upload reader, a strict JSON body reader and SSE framing.

Nothing here knows an endpoint, the printer or the storage layout: an upload ends as a temp file in
the folder the caller names, and the caller moves it into storage. Uploads are never held in memory.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.errors import HostError

_SLASHES, _RAW_SLASHES = re.compile(r"/{2,}"), re.compile(rb"/{2,}")


class BadRequest(HostError):
    """The client sent a body we refuse; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        self.message = message
        self.status = status
        super().__init__(message)


class UploadError(BadRequest):
    """A multipart upload we refuse: not multipart, malformed, too many or too large fields."""


def json_error(status: int, message: str) -> JSONResponse:
    """The one error body every endpoint uses: `{"error": message}`."""
    return JSONResponse({"error": message}, status_code=status)


class NormalizePaths:
    """Collapses runs of `/` in http paths, so `//api/printer` routes as `/api/printer`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "//" in scope["path"]:
            scope = dict(scope)
            scope["path"] = _SLASHES.sub("/", scope["path"])
            if scope.get("raw_path"):
                scope["raw_path"] = _RAW_SLASHES.sub(b"/", scope["raw_path"])
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    """Raised out of `receive` to stop the app reading; BodyLimit catches it."""


class BodyLimit:
    """Answers 413 once a request body passes `limit` bytes, before reading the rest of it.

    A Content-Length over the limit is refused without calling the app; otherwise bytes are counted
    as the app reads them, and past the limit the 413 goes out and `receive` raises.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, receive, send, f"{declared} bytes")
            return
        received = 0
        started = refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    refused = True
                    if not started:
                        await self._refuse(scope, receive, send, f"at least {received} bytes")
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # our 413 is the response; drop whatever the app answers after it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        # except*: the app may have read the body inside a task group, which wraps the raise
        try:
            await self.app(scope, limited_receive, tracking_send)
        except* _BodyTooLarge:
            pass

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: str) -> None:
        response = json_error(413, f"request body too large ({size}; the limit is {self.limit})")
        # the client may still be sending; closing is cheaper than reading the rest
        response.headers["connection"] = "close"
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects it; count the bytes anyway
    return None


@attrs.frozen
class Upload:
    """A received multipart form: the file part is in `temp_path`, the text fields in `fields`."""

    filename: str | None  # the client's filename of the file part (not sanitised here)
    temp_path: str | None  # None when the form had no file part
    size: int
    fields: Mapping[str, str]

    def discard(self) -> None:
        """Removes the temp file if it is still there (the caller did not move it)."""
        if self.temp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp_path)


@attrs.define(eq=False)
class _Form:
    """python-multipart's callbacks (sans-IO): keeps text fields, queues file bytes in `pending`."""

    file_field: str
    max_fields: int
    max_field_size: int
    fields: dict[str, str] = attrs.Factory(dict)
    has_file: bool = False
    filename: str | None = None
    pending: list[memoryview] = attrs.Factory(list)
    complete: bool = False
    _header_name: bytearray = attrs.Factory(bytearray)
    _header_value: bytearray = attrs.Factory(bytearray)
    _headers: dict[str, str] = attrs.Factory(dict)
    _name: str | None = None  # the text field being read; None while in the file part
    _value: bytearray = attrs.Factory(bytearray)

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field_data,
                "on_header_value": self._header_value_data, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
                "on_part_end": self._part_end, "on_end": self._end}

    def _part_begin(self) -> None:
        self._headers.clear()
        self._value.clear()

    # data callbacks get (buffer, start, end), not a copy; a header may arrive in pieces
    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        name = self._header_name.decode("latin-1").strip().lower()
        self._headers[name] = self._header_value.decode("latin-1").strip()
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        kind, options = parse_options_header(self._headers.get("content-disposition"))
        if kind != b"form-data" or b"name" not in options:
            raise UploadError("a multipart part has no Content-Disposition: form-data; name=...")
        name = _decode(options[b"name"])
        filename = _decode(options[b"filename"]) if b"filename" in options else None
        if name == self.file_field:
            if self.has_file:
                raise UploadError(f"more than one file part {name!r}")
            self.has_file, self.filename = True, filename
        elif filename is not None:
            raise UploadError(f"unexpected file part {name!r}; "
                              f"the file goes in {self.file_field!r}")
        elif name in self.fields:
            raise UploadError(f"field {name!r} given twice")
        elif len(self.fields) >= self.max_fields:
            raise UploadError(f"too many form fields (the limit is {self.max_fields})")
        else:
            self._name = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._name is None:
            self.pending.append(memoryview(data)[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > self.max_field_size:
            raise UploadError(f"field {self._name!r} is larger than {self.max_field_size} bytes")

    def _part_end(self) -> None:
        if self._name is not None:
            try:
                self.fields[self._name] = self._value.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError(f"field {self._name!r} is not UTF-8 text") from None
            self._name = None

    def _end(self) -> None:
        self.complete = True


def _decode(raw: bytes) -> str:
    # python-multipart hands header parameters back as latin-1 bytes; clients send UTF-8
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


async def receive_upload(request: Request, folder: str, *, file_field: str = "file",
                         max_fields: int = 50, max_field_size: int = 64 * 1024,
                         prefix: str = ".upload-") -> Upload:
    """Streams a multipart/form-data body into a temp file in `folder` and the text fields.

    Args:
        request: the Starlette request; its body is consumed.
        folder: where the temp file goes (the storage's filesystem, so the caller can os.replace).
        file_field: the name of the one file part; max_fields and max_field_size limit the others.
        prefix: the temp file's name is this and 8 random characters (so the owner of `folder`
            can recognise what a crash left behind).

    Returns:
        An Upload; the caller moves `temp_path` away or calls `discard()`.

    Raises:
        UploadError: not multipart, no boundary, malformed or truncated body, too many fields, a
            field too large, a second file part. No temp file is left after errors or cancellation.
    """
    kind, params = parse_options_header(request.headers.get("content-type"))
    if kind != b"multipart/form-data":
        raise UploadError(f"expected multipart/form-data, got {kind.decode('latin-1') or 'none'}")
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError("multipart/form-data without a boundary")
    form = _Form(file_field, max_fields, max_field_size)
    try:
        parser = MultipartParser(boundary, form.callbacks())  # type: ignore[arg-type]
    except ValueError as exc:  # FormParserError: a boundary over 256 bytes
        raise UploadError(f"bad multipart boundary: {exc}") from None

    fd: int | None = None
    path: str | None = None
    size = 0
    try:
        # aclosing: an error mid-body must close Starlette's stream generator, not leave it to gc
        async with contextlib.aclosing(request.stream()) as stream:
            async for chunk in stream:
                try:
                    parser.write(chunk)
                except MultipartParseError as exc:
                    raise UploadError(f"malformed multipart body: {exc}") from None
                if form.has_file and fd is None:
                    fd, path = tempfile.mkstemp(dir=folder, prefix=prefix)
                if form.pending:
                    assert fd is not None
                    size += _write_all(fd, form.pending)
                    form.pending.clear()
        parser.finalize()  # checks nothing (0.0.34): only `on_end` says the end was seen
        if not form.complete:
            raise UploadError("multipart body ended before its closing boundary")
        if fd is not None:
            os.fsync(fd)
    except BaseException:
        if path is not None:
            os.unlink(path)
        raise
    finally:
        if fd is not None:
            os.close(fd)
    return Upload(form.filename, path, size, dict(form.fields))


def _write_all(fd: int, pieces: list[memoryview]) -> int:
    for piece in pieces:
        while piece:  # os.write may write less than asked
            piece = piece[os.write(fd, piece):]
    return sum(len(piece) for piece in pieces)


async def read_json(request: Request, max_size: int = 1024 * 1024) -> dict[str, Any]:
    """Reads a JSON object body (Content-Type application/json, parameters allowed).

    Raises:
        BadRequest: wrong Content-Type, body over `max_size` (status 413), malformed JSON, a
            number no float can hold, or JSON that is not an object; the message names the
            problem.
    """
    kind, _ = parse_options_header(request.headers.get("content-type"))
    if kind != b"application/json":
        got = kind.decode("latin-1") or "none"
        raise BadRequest(f"expected Content-Type application/json, got {got}")
    body = bytearray()
    async with contextlib.aclosing(request.stream()) as stream:
        async for chunk in stream:
            body += chunk
            if len(body) > max_size:
                raise BadRequest(f"JSON body too large (the limit is {max_size} bytes)", status=413)
    return parse_json_object(bytes(body))


#: The most digits a JSON integer may have: every number must fit a float.
MAX_INT_DIGITS = 308
#: The deepest nesting of arrays and objects a JSON body may have (what reads or writes it
#: again, recursively, must never run out of stack).
MAX_DEPTH = 32


def parse_json_object(raw: bytes, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """`raw` as a JSON object, checked as parse_json checks it."""
    value = parse_json(raw, max_depth)
    if not isinstance(value, dict):
        raise BadRequest(f"expected a JSON object, got {_json_kind(value)}")
    return value


def parse_json(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """`raw` as JSON whose numbers are all finite floats or ints: NaN, Infinity, numbers beyond
    a double (1e400) and integers past Python's digit limit are refused, naming the field they
    stood in, so nothing behind an endpoint ever sees an infinity; so are arrays and objects
    nested deeper than `max_depth` and text holding a lone surrogate (`"\ud800"`: no UTF-8
    writes it). Every problem is a BadRequest naming it."""
    refused: list[tuple[object, str]] = []  # a marker left where the number was, the problem

    def refuse(problem: str) -> object:
        refused.append((object(), problem))
        return refused[-1][0]

    def to_float(text: str) -> Any:
        value = float(text)
        if math.isfinite(value):
            return value
        return refuse(f"JSON number {_cut(text)} is out of range (a number's size must stay "
                      "below 1.8e308)")

    def to_int(text: str) -> Any:
        digits = len(text) - text.startswith("-")
        if digits > MAX_INT_DIGITS:  # no float holds it (and int() stops at 4300 digits)
            return refuse(f"JSON number {_cut(text)} is out of range ({digits} digits; the "
                          f"limit is {MAX_INT_DIGITS})")
        return int(text)

    def constant(name: str) -> Any:  # NaN, Infinity, -Infinity: Python's extension, not JSON
        return refuse(f"malformed JSON: {name} is not valid JSON")

    try:
        value = json.loads(raw, parse_float=to_float, parse_int=to_int, parse_constant=constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise BadRequest(f"malformed JSON: {exc.msg} at {where}") from None
    except UnicodeDecodeError:
        raise BadRequest("malformed JSON: not UTF-8") from None
    except RecursionError:
        raise BadRequest(f"JSON nested too deeply (at most {max_depth} levels)") from None
    _check_tree(value, max_depth)
    if refused:
        marker, problem = refused[0]
        raise BadRequest(f"{problem} (field {_path_to(value, marker)!r})")
    return value


def _check_tree(value: Any, max_depth: int) -> None:
    """Nesting at most `max_depth` deep, no lone surrogate in a key or a string. Not
    recursive: the parser accepts nesting deeper than Python's stack would."""
    stack: list[tuple[int, Any]] = [(0, value)]
    while stack:
        depth, node = stack.pop()
        if isinstance(node, str):
            _no_surrogate(node)
        elif isinstance(node, (dict, list)):
            if depth >= max_depth:
                raise BadRequest(f"JSON nested too deeply (at most {max_depth} levels)")
            if isinstance(node, dict):
                for key in node:
                    _no_surrogate(key)
                node = node.values()
            stack.extend((depth + 1, item) for item in node)


def _no_surrogate(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadRequest(f"JSON text holds a lone surrogate (\\u{ord(text[exc.start]):04x}"
                             "): not a character") from None


def _cut(text: str, limit: int = 20) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def _path_to(value: Any, target: object) -> str:
    """Where `target` is inside `value`: `targets.tool0`, `commands[2]`. Not recursive: the
    parser accepts nesting deeper than Python's stack would."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, node = stack.pop()
        if node is target:
            return path
        if isinstance(node, dict):
            stack.extend((f"{path}.{k}" if path else k, v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(node))
    return "?"


def _json_kind(value: object) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, list):
        return "an array"
    return "a string" if isinstance(value, str) else "a number"


def sse_frame(name: str, payload: Mapping[str, Any]) -> bytes:
    """One Server-Sent Events frame: `event: <name>`, `data: <compact JSON>`, blank line."""
    if "\n" in name or "\r" in name:
        raise ValueError(f"SSE event name with a line break: {name!r}")
    # compact json.dumps escapes every CR/LF inside strings, so data stays on one line
    data = json.dumps(payload, separators=(",", ":"), default=str)
    return f"event: {name}\ndata: {data}\n\n".encode()
