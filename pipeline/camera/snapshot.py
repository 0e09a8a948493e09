"""One snapshot: GET the webcam's snapshot URL with httpx under its timeout, check it is a
JPEG, write it whole (a temporary name, then a rename). Every failure is a `CaptureError`
with a one-line reason (timeout, HTTP status, not a JPEG, disk full); nothing else escapes.
"""

from __future__ import annotations

import contextlib
import errno
import os

import httpx
import trio

from pipeline.config.camera import WebcamSpec

#: The largest snapshot taken (bytes): a camera that streams forever is cut off here.
MAX_BYTES = 20 * 1024 * 1024


class CaptureError(Exception):
    """A frame that could not be taken; the message says why in one line."""


def client(webcam: WebcamSpec) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=webcam.ssl_validation, follow_redirects=True,
                             timeout=webcam.snapshot_timeout)


async def fetch(http: httpx.AsyncClient, webcam: WebcamSpec) -> bytes:
    """The JPEG the snapshot URL answers within snapshot_timeout seconds."""
    url = webcam.snapshot
    with trio.move_on_after(webcam.snapshot_timeout) as scope:
        try:
            async with http.stream("GET", url) as resp:
                if resp.status_code != 200:
                    raise CaptureError(f"the webcam answered HTTP {resp.status_code}")
                data = bytearray()
                async for chunk in resp.aiter_bytes():
                    data += chunk
                    if len(data) > MAX_BYTES:
                        raise CaptureError(f"the snapshot is larger than {MAX_BYTES} bytes")
        except httpx.TimeoutException as exc:
            raise CaptureError(f"no snapshot within {webcam.snapshot_timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise CaptureError(f"cannot reach the webcam: {exc}") from exc
    if scope.cancelled_caught:
        raise CaptureError(f"no snapshot within {webcam.snapshot_timeout:g} s")
    if not data.startswith(b"\xff\xd8"):
        raise CaptureError(f"the snapshot is not a JPEG ({len(data)} bytes starting "
                           f"{bytes(data[:8])!r})")
    return bytes(data)


def write_frame(path: str, data: bytes) -> None:
    """Write `data` to `path` whole (blocking: run in a thread). Raises CaptureError."""
    tmp = path + ".part"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if exc.errno == errno.ENOSPC:
            raise CaptureError(f"disk full: cannot write {path}") from exc
        raise CaptureError(f"cannot write {path}: {exc.strerror or exc}") from exc
