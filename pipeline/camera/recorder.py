"""One printer's timelapse while it prints: a frame set per print, frames on Z changes
(`zchange`), every `interval` seconds (`timed`) or whenever the session parks the head for a
steady frame (`timelapse.park`), each with CaptureStart / CaptureDone / CaptureFailed and the
`timelapse.capture.pre` / `.post` stages around it; at the print's end the post roll
(PostRollStart / PostRollEnd: the last frame repeated in zchange mode, more frames shot in
timed mode) and the render queued (render.py). The whole of it runs in the printer's nursery,
fed by its bus; a capture never holds the serial link (a steady frame holds the print for at
most `park.wait` seconds, the session's own deadline).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import attrs
import httpx
import trio

from pipeline.config.camera import TimelapseMode, TimelapseSpec, WebcamSpec
from pipeline.events.names import Event
from pipeline.fanout.bus import BusEvent, EventBus
from pipeline.hooks.chain import Pipeline
from pipeline.timelapse import names, plan

from .render import Renderer
from .snapshot import CaptureError, client, fetch, write_frame
from .store import Store

log = logging.getLogger("printpipe.timelapse")

_EVENTS = frozenset({Event.PRINT_STARTED, Event.PRINT_DONE, Event.PRINT_FAILED,
                     Event.Z_CHANGE})


@attrs.define(eq=False)
class Recording:
    """The frame set of the print running."""

    prefix: str
    gcode: str
    next: int = 0                 # the next frame's number (failed frames leave no gap)
    last_time: float = -math.inf  # when the last frame was taken (trio clock)
    failures: int = 0


class Camera:
    def __init__(self, *, webcam: Callable[[], WebcamSpec],
                 timelapse: Callable[[], TimelapseSpec], state: str, bus: EventBus,
                 pipeline: Callable[[], Pipeline], printing: Callable[[], bool],
                 label: str = "") -> None:
        self._webcam = webcam
        self._timelapse = timelapse
        self.bus = bus
        self._pipeline = pipeline
        self._printing = printing
        self._label = label
        self.store = Store(state)
        #: The config POST /api/timelapse set (until a reload or restart), else None.
        self.override: TimelapseSpec | None = None
        #: Bumped whenever the timelapse config changes (the push socket resends it).
        self.version = 0
        self.recording: Recording | None = None
        self.renderer = Renderer(self.store, self.publish,
                                 lambda: (self.spec, self.webcam), printing)
        self._http: httpx.AsyncClient | None = None
        self._timed = trio.CancelScope()
        self._parked_send, self._parked = trio.open_memory_channel[Callable[[], None]](4)

    # ---- settings -----------------------------------------------------------------------
    @property
    def spec(self) -> TimelapseSpec:
        return self.override or self._timelapse()

    @property
    def webcam(self) -> WebcamSpec:
        return self._webcam()

    @property
    def active(self) -> bool:
        """Frames are taken for prints: a mode and a snapshot URL."""
        return self.spec.mode is not TimelapseMode.OFF and bool(self.webcam.snapshot)

    def configure(self, spec: TimelapseSpec | None) -> None:
        """POST /api/timelapse: this config from now on (None: the configured one again)."""
        self.override = spec
        self.version += 1

    def publish(self, event: str, payload: dict[str, Any]) -> None:
        self.bus.publish(event, payload)

    # ---- the service --------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        sub = self.bus.subscribe("timelapse", events=_EVENTS, size=1024)
        try:
            await trio.to_thread.run_sync(self.store.make)
        except OSError as exc:
            log.error("%scannot make the timelapse folders %s: %s", self._label,
                      self.store.frames, exc)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.renderer.run)
                nursery.start_soon(self._parked_frames)
                task_status.started()
                async for ev in sub:
                    await self._on(ev, nursery)
                nursery.cancel_scope.cancel()
        finally:
            sub.close()
            if self._http is not None:
                with trio.CancelScope(shield=True):
                    await self._http.aclose()

    async def _on(self, ev: BusEvent, nursery: trio.Nursery) -> None:
        p = ev.payload
        if ev.name == Event.PRINT_STARTED:
            await self._start(str(p.get("name") or p.get("path") or "print"), nursery)
        elif ev.name == Event.Z_CHANGE:
            rec, spec = self.recording, self.spec
            if (rec is not None and spec.mode is TimelapseMode.ZCHANGE
                    and not spec.park.enabled
                    and plan.zchange_due(spec, p.get("new"), p.get("old"),
                                         now=trio.current_time(), last=rec.last_time)):
                await self.capture()
        elif ev.name in (Event.PRINT_DONE, Event.PRINT_FAILED):
            await self._stop(ev.name == Event.PRINT_DONE)

    async def _start(self, gcode: str, nursery: trio.Nursery) -> None:
        self._timed.cancel()
        if not self.active:
            self.recording = None
            return
        self.recording = Recording(names.prefix_for(gcode, time.time()), gcode)
        if self._http is not None:
            await self._http.aclose()
        self._http = client(self.webcam)
        if self.spec.mode is TimelapseMode.TIMED:
            self._timed = trio.CancelScope()
            nursery.start_soon(self._shoot_every, self._timed)

    async def _shoot_every(self, scope: trio.CancelScope) -> None:
        with scope:
            while True:
                await self.capture()
                await trio.sleep(self.spec.interval)

    async def _stop(self, success: bool) -> None:
        rec, spec = self.recording, self.spec
        self._timed.cancel()
        if rec is None:
            return
        if success and spec.post_roll:
            await self._post_roll(rec, spec)
        self.recording = None
        if not rec.next:
            log.warning("%stimelapse of %s: no frame was taken (%d failed)", self._label,
                        rec.gcode, rec.failures)
        if spec.render_after_print:  # no frames: MovieFailed, reason no_frames
            self.renderer.queue(rec.prefix, rec.gcode)

    async def _post_roll(self, rec: Recording, spec: TimelapseSpec) -> None:
        self.publish(Event.POST_ROLL_START, plan.post_roll_start(spec))
        if spec.mode is TimelapseMode.TIMED:
            with trio.move_on_after(spec.post_roll):
                while True:
                    await trio.sleep(spec.interval)
                    await self.capture()
        else:
            await self.capture()  # the finished print: the frame the post roll repeats
            count = plan.post_roll_frames(spec)
            if rec.next and count:
                try:
                    rec.next = 1 + await trio.to_thread.run_sync(
                        self.store.repeat_frame, rec.prefix, rec.next - 1, count)
                except OSError as exc:
                    log.error("%stimelapse post roll: %s", self._label, exc)
        self.publish(Event.POST_ROLL_END, {})

    # ---- frames -------------------------------------------------------------------------
    def parked(self, frame: Any) -> None:
        """The session parked the head for a steady frame (called by the link's task): shoot
        it in this service's task, which calls `frame.release()` when done."""
        if self.recording is None:
            frame.release()
            return
        try:
            self._parked_send.send_nowait(frame.release)
        except trio.WouldBlock:
            frame.release()

    async def _parked_frames(self) -> None:
        async for release in self._parked:
            try:
                if self.recording is not None:
                    await self.capture()
            finally:
                release()

    async def capture(self) -> bool:
        """Take one frame of the recording; False when it failed (CaptureFailed said why)."""
        rec, webcam = self.recording, self.webcam
        if rec is None or self._http is None:
            return False
        path = self.store.frame_path(rec.prefix, rec.next)
        rec.last_time = trio.current_time()
        pipeline = self._pipeline()
        self.publish(Event.CAPTURE_START, {"file": path})
        plan.capture_pre(pipeline, path)
        try:
            data = await fetch(self._http, webcam)
            await trio.to_thread.run_sync(write_frame, path, data)
        except CaptureError as exc:
            rec.failures += 1
            if rec.failures == 1:
                log.warning("%stimelapse frame failed: %s (%s)", self._label, exc,
                            webcam.snapshot)
            self.publish(Event.CAPTURE_FAILED, {"file": path, "error": str(exc),
                                                "url": webcam.snapshot})
            plan.capture_post(pipeline, path, False)
            return False
        rec.next += 1
        self.publish(Event.CAPTURE_DONE, {"file": path})
        plan.capture_post(pipeline, path, True)
        return True

    # ---- the API's view -----------------------------------------------------------------
    def listing(self, base: str = "", *, unrendered: bool = True) -> dict[str, Any]:
        """GET /api/timelapse's answer (blocking: scans the folders)."""
        spec = self.spec
        exts = names.extensions(self._pipeline(), spec.format)
        out: dict[str, Any] = {
            "config": plan.api_config(spec), "enabled": self.active,
            "files": [m.listing(base) for m in self.store.movie_list(exts)]}
        if unrendered:
            rec = self.recording
            out["unrendered"] = [
                s.listing(recording=rec is not None and rec.prefix == s.prefix,
                          rendering=self.renderer.rendering(s.prefix) is not None,
                          progress=self.renderer.rendering(s.prefix))
                for s in self.store.frame_sets()]
        return out

    def busy(self, prefix: str) -> str | None:
        """Why the set `prefix` cannot be rendered or deleted now, or None."""
        if self.recording is not None and self.recording.prefix == prefix:
            return "it is being recorded"
        if self.renderer.rendering(prefix) is not None:
            return "it is being rendered"
        return None
