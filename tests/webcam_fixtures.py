"""A test webcam: a small HTTP server on 127.0.0.1 serving real JPEGs that ffmpeg made
(`testsrc` frames, each with its frame counter), or answering slowly, with an error or with
garbage; and ffprobe's view of a movie."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import attrs
import pytest
import trio

FFMPEG = shutil.which("ffmpeg")
#: Skipped without ffmpeg, unless PRINTPIPE_REQUIRE_FFMPEG is set (.ci/run): then they fail.
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None and not os.environ.get("PRINTPIPE_REQUIRE_FFMPEG"),
                                  reason="ffmpeg is not installed")


def make_jpegs(folder, count: int = 8, size: str = "64x48") -> list[bytes]:
    """`count` JPEG frames of ffmpeg's test pattern (with its frame counter)."""
    subprocess.run([FFMPEG or "ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc=size={size}:rate=1", "-frames:v", str(count),
                    str(folder / "src-%d.jpg")], check=True, timeout=30)
    return [(folder / f"src-{i}.jpg").read_bytes() for i in range(1, count + 1)]


@attrs.define(eq=False)
class Webcam:
    """mode: ok, slow, error, garbage. `on_request` is called at each snapshot request."""

    frames: list[bytes]
    mode: str = "ok"
    port: int = 0
    requests: int = 0
    on_request: Callable[[], None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/snapshot"

    async def handle(self, stream: trio.SocketStream) -> None:
        data = b""
        with trio.move_on_after(5):
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                data += chunk
        self.requests += 1
        if self.on_request is not None:
            self.on_request()
        if self.mode == "slow":
            await trio.sleep(30)
        if self.mode == "error":
            body, status, kind = b"camera broke", b"500 Internal Server Error", b"text/plain"
        elif self.mode == "garbage":
            body, status, kind = b"<html>not a picture</html>", b"200 OK", b"image/jpeg"
        else:
            body = self.frames[(self.requests - 1) % len(self.frames)]
            status, kind = b"200 OK", b"image/jpeg"
        head = (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + kind +
                b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        try:
            await stream.send_all(head + body)
            await stream.aclose()
        except trio.BrokenResourceError:
            pass


@asynccontextmanager
async def webcam(frames: list[bytes], mode: str = "ok") -> AsyncIterator[Webcam]:
    cam = Webcam(frames, mode)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, cam.handle, 0, host="127.0.0.1"))
        cam.port = listeners[0].socket.getsockname()[1]
        yield cam
        nursery.cancel_scope.cancel()


def probe(path: str) -> dict:
    """ffprobe's frame count (counted), frame rate and codec of a movie's video stream."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
         "stream=nb_read_frames,r_frame_rate,codec_name,width,height", "-of", "json", path],
        capture_output=True, text=True, check=True, timeout=30)
    return json.loads(out.stdout)["streams"][0]
