"""pipeline.app.http.support over a real hypercorn (trio worker) on 127.0.0.1:0, driven by httpx."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.app.http.support import (
    BadRequest,
    BodyLimit,
    NormalizePaths,
    Upload,
    UploadError,
    json_error,
    read_json,
    receive_upload,
    sse_frame,
)
from pipeline.errors import HostError

BOUNDARY = "printpipe-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def make_app(folder: str, seen: dict[str, Any], limit: int) -> Any:
    async def where(request: Request) -> Response:
        return JSONResponse({"path": request.url.path, "query": request.url.query,
                             "raw_path": request.scope["raw_path"].decode()})

    async def echo(request: Request) -> Response:
        seen["echo_called"] = True
        body = await request.body()
        seen["echo_done"] = True
        return JSONResponse({"n": len(body)})

    async def echo_in_task(request: Request) -> Response:
        seen["echo_called"] = True
        async with trio.open_nursery() as nursery:  # the 413 raise arrives in an ExceptionGroup
            nursery.start_soon(request.body)
        seen["echo_done"] = True
        return Response(status_code=204)

    async def upload(request: Request) -> Response:
        if tracemalloc.is_tracing():
            tracemalloc.reset_peak()
        try:
            up = await receive_upload(request, folder)
        except UploadError as exc:
            return json_error(exc.status, exc.message)
        if tracemalloc.is_tracing():
            seen["peak"] = tracemalloc.get_traced_memory()[1]
        seen["upload"] = up
        return JSONResponse({"size": up.size})

    async def body_json(request: Request) -> Response:
        try:
            return JSONResponse(await read_json(request))
        except BadRequest as exc:
            return json_error(exc.status, exc.message)

    routes = [Route("/api/x", where), Route("/echo", echo, methods=["POST"]),
              Route("/echo-in-task", echo_in_task, methods=["POST"]),
              Route("/upload", upload, methods=["POST"]),
              Route("/json", body_json, methods=["POST"])]
    inner = NormalizePaths(BodyLimit(Starlette(routes=routes), limit))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await inner(scope, receive, send)
        except BaseException as exc:  # what would reach hypercorn's error log
            seen["escaped"] = exc
            raise

    return app


@asynccontextmanager
async def serving(folder: str, limit: int = 1000
                  ) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    seen: dict[str, Any] = {}
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.errorlog = None
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(partial(serve, make_app(folder, seen, limit), config,
                                           shutdown_trigger=stop.wait))
        async with httpx.AsyncClient(base_url=urls[0]) as client:
            yield client, seen
        stop.set()


def form(*parts: tuple[str, str | None, bytes], boundary: str = BOUNDARY) -> bytes:
    out = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n"
        out += head.encode() + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def leftovers(folder: str) -> list[str]:
    return sorted(os.listdir(folder))


async def test_double_slashes_route_as_single(tmp_path):
    async with serving(str(tmp_path)) as (client, _):
        for path in ("//api/x", "/api//x", "///api///x?a=b//c"):
            # a relative "//api/x" would be a host name to httpx; send the raw path as is
            url = client.base_url.copy_with(raw_path=path.encode())
            response = await client.get(url)
            assert response.request.url.raw_path == path.encode()
            assert response.status_code == 200, path
            assert response.json() == {"path": "/api/x", "raw_path": "/api/x",
                                       "query": path.partition("?")[2]}


async def test_body_under_the_limit_reaches_the_app(tmp_path):
    async with serving(str(tmp_path)) as (client, seen):
        response = await client.post("/echo", content=b"x" * 1000)
    assert (response.status_code, response.json()) == (200, {"n": 1000})
    assert seen["echo_done"]


async def test_content_length_over_the_limit_is_refused_without_calling_the_app(tmp_path):
    async with serving(str(tmp_path)) as (client, seen):
        response = await client.post("/echo", content=b"x" * 1001)
        assert response.status_code == 413
        assert response.json() == {
            "error": "request body too large (1001 bytes; the limit is 1000)"}
        assert response.headers["connection"] == "close"
        assert "echo_called" not in seen
        assert (await client.get("/api/x")).status_code == 200  # the server goes on serving


@pytest.mark.parametrize("path", ["/echo", "/echo-in-task"])
async def test_chunked_body_past_the_limit_stops_the_app_reading(tmp_path, path):
    async def body() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 600

    async with serving(str(tmp_path)) as (client, seen):
        response = await client.post(path, content=body())
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {
        "error": "request body too large (at least 1200 bytes; the limit is 1000)"}
    assert seen["echo_called"] and "echo_done" not in seen
    assert "escaped" not in seen


async def test_upload_round_trips_file_and_fields(tmp_path):
    content = b"G28\r\nG1 X10 ; --not-a-boundary\r\n" * 100
    body = form(("path", None, b"sub/dir"), ("select", None, b"true"),
                ("file", "cube é.gcode", content),
                ("print", None, b"false"))
    async with serving(str(tmp_path), limit=1 << 20) as (client, seen):
        response = await client.post("/upload", content=body, headers={"content-type": MULTIPART})
    assert response.status_code == 200
    up: Upload = seen["upload"]
    assert up.filename == "cube é.gcode"
    assert up.size == len(content)
    assert dict(up.fields) == {"path": "sub/dir", "select": "true", "print": "false"}
    assert up.temp_path is not None and os.path.dirname(up.temp_path) == str(tmp_path)
    assert os.path.basename(up.temp_path).startswith(".upload-")
    with open(up.temp_path, "rb") as f:
        assert f.read() == content
    up.discard()
    up.discard()  # a second discard is harmless
    assert leftovers(str(tmp_path)) == []


async def test_form_without_a_file_part(tmp_path):
    async with serving(str(tmp_path), limit=1 << 20) as (client, seen):
        response = await client.post("/upload", content=form(("foldername", None, b"new")),
                                     headers={"content-type": MULTIPART})
    assert response.status_code == 200
    up: Upload = seen["upload"]
    assert (up.filename, up.temp_path, up.size) == (None, None, 0)
    assert dict(up.fields) == {"foldername": "new"}
    assert leftovers(str(tmp_path)) == []


async def test_20_mb_upload_keeps_memory_flat(tmp_path):
    chunk = bytes(range(256)) * 256  # 64 KiB, reused so the client allocates nothing per chunk
    count = 320
    head = (f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="file"; filename="big.gcode"\r\n\r\n')

    async def body() -> AsyncIterator[bytes]:
        yield head.encode()
        for _ in range(count):
            yield chunk
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    expected = hashlib.sha256()
    for _ in range(count):
        expected.update(chunk)
    tracemalloc.start()
    try:
        async with serving(str(tmp_path), limit=64 << 20) as (client, seen):
            response = await client.post("/upload", content=body(),
                                         headers={"content-type": MULTIPART})
    finally:
        tracemalloc.stop()
    assert response.status_code == 200
    up: Upload = seen["upload"]
    assert up.size == count * len(chunk) == 20 << 20
    assert seen["peak"] < 4 << 20, f"peak {seen['peak']} bytes traced while receiving 20 MiB"
    actual = hashlib.sha256()
    with open(up.temp_path, "rb") as f:
        while block := f.read(1 << 20):
            actual.update(block)
    assert actual.hexdigest() == expected.hexdigest()
    up.discard()


TRUNCATED = form(("file", "a.gcode", b"G28" * 1000))[:-30]
NO_DISPOSITION = f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{BOUNDARY}--\r\n"


@pytest.mark.parametrize(("content_type", "body", "message"), [
    pytest.param("application/json", b"{}", "expected multipart/form-data, got application/json",
                 id="json"),
    pytest.param(None, b"", "expected multipart/form-data, got none", id="no-type"),
    pytest.param("multipart/form-data", form(("a", None, b"1")),
                 "multipart/form-data without a boundary", id="no-boundary"),
    pytest.param(MULTIPART, b"this is not multipart at all",
                 "malformed multipart body: Expected boundary character", id="garbage"),
    pytest.param(MULTIPART, b"", "multipart body ended before its closing boundary", id="empty"),
    pytest.param(MULTIPART, NO_DISPOSITION.encode(), "a multipart part has no Content-Disposition",
                 id="no-disposition"),
    pytest.param(MULTIPART, form(*[(f"f{i}", None, b"v") for i in range(51)]),
                 "too many form fields (the limit is 50)", id="too-many-fields"),
    pytest.param(MULTIPART, form(("big", None, b"v" * (64 * 1024 + 1))),
                 "field 'big' is larger than 65536 bytes", id="field-too-large"),
    pytest.param(MULTIPART, form(("a", None, b"1"), ("a", None, b"2")), "field 'a' given twice",
                 id="repeated-field"),
    pytest.param(MULTIPART, form(("a", None, b"\xff")), "field 'a' is not UTF-8 text",
                 id="not-utf8"),
    pytest.param(MULTIPART, form(("other", "x.gcode", b"G28")), "unexpected file part 'other'",
                 id="wrong-file-field"),
    pytest.param(MULTIPART, form(("file", "a.gcode", b"G28"), ("file", "b.gcode", b"G29")),
                 "more than one file part", id="two-files"),
    pytest.param(MULTIPART, TRUNCATED, "multipart body ended before its closing boundary",
                 id="truncated"),
])
async def test_bad_uploads_answer_400_and_leave_no_temp_file(tmp_path, content_type, body, message):
    headers = {"content-type": content_type} if content_type else {}
    async with serving(str(tmp_path), limit=1 << 20) as (client, seen):
        response = await client.post("/upload", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"].startswith(message)
    assert "upload" not in seen
    assert leftovers(str(tmp_path)) == []


def fake_request(chunks: list[bytes], *, then_block: bool) -> Request:
    """A Request whose body is `chunks`, then (if then_block) a receive that never returns."""
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        if then_block:
            await trio.sleep_forever()
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(b"content-type", MULTIPART.encode())]}
    return Request(scope, receive)


async def test_cancelled_upload_removes_its_temp_file(tmp_path):
    head = form(("file", "a.gcode", b"G28\n" * 1000))[:-40]
    request = fake_request([head], then_block=True)
    with trio.move_on_after(0.05) as scope:
        await receive_upload(request, str(tmp_path))
    assert scope.cancelled_caught
    assert leftovers(str(tmp_path)) == []


async def test_upload_errors_are_host_errors(tmp_path):
    request = fake_request([b"--nope\r\n"], then_block=False)
    with pytest.raises(UploadError) as info:
        await receive_upload(request, str(tmp_path))
    assert isinstance(info.value, BadRequest) and isinstance(info.value, HostError)
    assert info.value.status == 400 and str(info.value) == info.value.message


JSON = "application/json"


def json_says(body: bytes) -> str:
    """What this Python's json module says about `body` (3.13 words trailing commas its own
    way), in the form the endpoint reports it: the message, then where."""
    try:
        json.loads(body)
    except json.JSONDecodeError as exc:
        return f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    raise AssertionError(f"{body!r} is valid JSON")


@pytest.mark.parametrize(("content_type", "body", "status", "expected"), [
    pytest.param(JSON, b'{"command": "start"}', 200, {"command": "start"}, id="plain"),
    pytest.param("application/json; charset=utf-8", b'{"a": [1, 2]}', 200, {"a": [1, 2]},
                 id="charset"),
    pytest.param("Application/JSON", b"{}", 200, {}, id="case"),
    pytest.param(JSON, b"", 400, "malformed JSON: Expecting value at line 1 column 1", id="empty"),
    pytest.param(JSON, b'{"a": 1,}', 400, json_says(b'{"a": 1,}'), id="trailing-comma"),
    pytest.param(JSON, b"[1, 2]", 400, "expected a JSON object, got an array", id="array"),
    pytest.param(JSON, b'"start"', 400, "expected a JSON object, got a string", id="string"),
    pytest.param(JSON, b"42", 400, "expected a JSON object, got a number", id="number"),
    pytest.param(JSON, b"null", 400, "expected a JSON object, got null", id="null"),
    pytest.param(JSON, b"true", 400, "expected a JSON object, got true", id="true"),
    pytest.param(JSON, b'{"t": NaN}', 400, "malformed JSON: NaN is not valid JSON (field 't')",
                 id="nan"),
    pytest.param(JSON, b'{"t": "\xff"}', 400, "malformed JSON: not UTF-8", id="not-utf8"),
    pytest.param(JSON, b'{"t": 1' + b"0" * 5000 + b"}", 400,
                 "JSON number 10000000000000000000... is out of range (5001 digits; the limit "
                 "is 308) (field 't')", id="int-5001-digits"),
    pytest.param(JSON, b'{"t": [-1' + b"0" * 308 + b"]}", 400,
                 f"JSON number -1{'0' * 18}... is out of range (309 digits; the limit is 308) "
                 "(field 't[0]')", id="int-309-digits"),
    pytest.param(JSON, b'{"t": 9' + b"9" * 307 + b"}", 200, {"t": int("9" * 308)},
                 id="int-308-digits"),
    pytest.param(JSON, b'{"t": 1e400}', 400, "JSON number 1e400 is out of range (a number's "
                 "size must stay below 1.8e308) (field 't')", id="float-overflow"),
    pytest.param(JSON, b'{"t": {"u": -2.5E+999}}', 400,
                 "JSON number -2.5E+999 is out of range (a number's size must stay below "
                 "1.8e308) (field 't.u')", id="negative-float-overflow"),
    pytest.param(JSON, b'{"t": 1e-400, "u": 1.5e308}', 200, {"t": 0.0, "u": 1.5e308},
                 id="float-edges"),
    pytest.param(JSON, b"[" * 100_000, 400, "JSON nested too deeply (at most 32 levels)",
                 id="deep"),
    pytest.param(JSON, b'{"a": "' + b"x" * (1 << 20) + b'"}', 413,
                 "JSON body too large (the limit is 1048576 bytes)", id="too-large"),
    pytest.param("text/plain", b"{}", 400,
                 "expected Content-Type application/json, got text/plain", id="text-plain"),
    pytest.param(None, b"{}", 400, "expected Content-Type application/json, got none",
                 id="no-type"),
])
async def test_read_json(tmp_path, content_type, body, status, expected):
    headers = {"content-type": content_type} if content_type else {}
    async with serving(str(tmp_path), limit=4 << 20) as (client, _):
        response = await client.post("/json", content=body, headers=headers)
    assert response.status_code == status
    assert response.json() == (expected if status == 200 else {"error": expected})


def test_json_error_body():
    response = json_error(409, "not connected")
    assert response.status_code == 409
    assert json.loads(response.body) == {"error": "not connected"}
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize(("name", "payload", "frame"), [
    ("PrintDone", {"name": "cube.gcode", "time": 12.5},
     b'event: PrintDone\ndata: {"name":"cube.gcode","time":12.5}\n\n'),
    ("Echo", {"text": "line one\nline two\r\n"},
     b'event: Echo\ndata: {"text":"line one\\nline two\\r\\n"}\n\n'),
    ("Path", {"p": pathlib.PurePosixPath("/a/b")}, b'event: Path\ndata: {"p":"/a/b"}\n\n'),
    ("Empty", {}, b"event: Empty\ndata: {}\n\n"),
])
def test_sse_frame(name, payload, frame):
    assert sse_frame(name, payload) == frame
    assert frame.count(b"\n") == 3


def test_sse_frame_refuses_a_name_with_a_line_break():
    with pytest.raises(ValueError, match="line break"):
        sse_frame("Bad\nevent: Other", {})
