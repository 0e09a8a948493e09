"""Movies from frame sets: the real ffmpeg as a subprocess (`nice`, one render at a time per
printer), automatic renders waiting while a print runs (a render asked for through the API
does not wait), progress read from ffmpeg's `-progress` output, MovieRendering / MovieDone /
MovieFailed with OctoPrint's payloads. A failed render keeps its frames (it can be rendered
again); a done one deletes them. Disk full, a missing ffmpeg, no frames: MovieFailed with the
reason, never a crash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from typing import Any

import attrs
import trio

from pipeline.config.camera import TimelapseSpec, WebcamSpec
from pipeline.events.names import Event
from pipeline.timelapse import names, plan

from .store import Store

log = logging.getLogger("printpipe.timelapse")

#: The last lines of ffmpeg's error output kept for MovieFailed's `error`.
ERROR_TAIL = 400


@attrs.define(eq=False)
class RenderJob:
    prefix: str
    gcode: str
    wait_for_print: bool = True   # automatic renders wait while a print runs
    progress: float = 0.0         # 0..100


class Renderer:
    def __init__(self, store: Store, publish: Callable[[str, dict[str, Any]], None],
                 settings: Callable[[], tuple[TimelapseSpec, WebcamSpec]],
                 printing: Callable[[], bool]) -> None:
        self.store = store
        self._publish = publish
        self._settings = settings
        self._printing = printing
        self._send, self._receive = trio.open_memory_channel[RenderJob](64)
        self.pending: list[RenderJob] = []
        self.current: RenderJob | None = None

    def queue(self, prefix: str, gcode: str = "", *, wait_for_print: bool = True) -> bool:
        """Render the set `prefix` when the renderer is free; False when it is queued already."""
        if any(j.prefix == prefix for j in self.pending) or (
                self.current is not None and self.current.prefix == prefix):
            return False
        job = RenderJob(prefix, gcode or prefix, wait_for_print)
        self.pending.append(job)
        self._send.send_nowait(job)
        return True

    def rendering(self, prefix: str) -> float | None:
        """The render's progress (0..100) when `prefix` is rendering or queued, else None."""
        if self.current is not None and self.current.prefix == prefix:
            return self.current.progress
        return 0.0 if any(j.prefix == prefix for j in self.pending) else None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        task_status.started()
        async for job in self._receive:
            while self._held(job):  # noqa: ASYNC110 (a look a second is plenty for a render)
                await trio.sleep(1.0)
            self.pending.remove(job)
            self.current = job
            try:
                await self.render(job)
            finally:
                self.current = None

    def _held(self, job: RenderJob) -> bool:
        """An automatic render waits while a print runs (unless render_while_printing)."""
        return (job.wait_for_print and self._printing()
                and not self._settings()[0].render_while_printing)

    async def render(self, job: RenderJob) -> bool:
        spec, webcam = self._settings()
        store = self.store
        movie = os.path.join(store.movies, f"{job.prefix}.{spec.format}")
        payload = plan.movie_payload(job.gcode, movie, job.prefix)
        frames = await trio.to_thread.run_sync(store.frame_count, job.prefix)
        if not frames:
            self._publish(Event.MOVIE_FAILED, {**payload, "returncode": 0, "error":
                          "no frames were captured", "reason": "no_frames"})
            return False
        self._publish(Event.MOVIE_RENDERING, payload)
        tmp = os.path.join(store.movies, f".{job.prefix}.rendering.{spec.format}")
        argv = plan.ffmpeg_argv(spec, webcam, os.path.join(store.frames,
                                                          names.frame_pattern(job.prefix)),
                                tmp, nice="nice" if shutil.which("nice") else None)
        log.info("rendering %s (%d frames)", os.path.basename(movie), frames)
        try:
            code, error = await self._ffmpeg(argv, job, frames)
        except OSError as exc:
            code, error = None, f"cannot run {spec.ffmpeg}: {exc.strerror or exc}"
        if code == 0:
            try:
                os.replace(tmp, movie)
            except OSError as exc:
                code, error = None, f"cannot write {movie}: {exc.strerror or exc}"
        if code != 0:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            reason = "returncode" if code else "unknown"
            log.error("timelapse %s failed: %s", os.path.basename(movie), error)
            self._publish(Event.MOVIE_FAILED, {**payload, "returncode": code if code else 0,
                                               "error": error, "reason": reason})
            return False
        job.progress = 100.0
        await trio.to_thread.run_sync(store.delete_frames, job.prefix)
        self._publish(Event.MOVIE_DONE, payload)
        log.info("timelapse %s rendered", os.path.basename(movie))
        await trio.to_thread.run_sync(lambda: store.sweep(
            spec.keep_days, spec.keep_count, busy=frozenset()))
        return True

    async def _ffmpeg(self, argv: list[str], job: RenderJob, frames: int) -> tuple[int, str]:
        """Run ffmpeg; (return code, the tail of its error output)."""
        err = bytearray()
        async with trio.open_nursery() as nursery:
            proc = await trio.lowlevel.open_process(argv, stdout=-1, stderr=-1,
                                                    stdin=-3)  # PIPE, PIPE, DEVNULL
            assert proc.stdout is not None and proc.stderr is not None

            async def errors() -> None:
                assert proc.stderr is not None
                async for chunk in proc.stderr:
                    err.extend(chunk)
                    del err[:-ERROR_TAIL * 4]
            nursery.start_soon(errors)
            buf = b""
            try:
                async for chunk in proc.stdout:
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if line.startswith(b"frame="):
                            with contextlib.suppress(ValueError):
                                job.progress = min(99.0, 100.0 * int(line[6:]) / frames)
                code = await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    with trio.CancelScope(shield=True):
                        await proc.wait()
        text = err.decode("utf-8", "replace").strip().splitlines()
        return code, (text[-1] if text else f"ffmpeg ended with {code}")[-ERROR_TAIL:]
