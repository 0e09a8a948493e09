"""The push socket that mobile apps (OctoApp, Printoid, OctoPod) and OctoPrint's own clients
listen on, in two framings (framing.py): `/sockjs/websocket` (SockJS's raw websocket transport:
one JSON object per text message) and `/sockjs/<server>/<session>/websocket` (SockJS's framed
one); a passive login's session (login.py) authenticates it.

The conversation is OctoPrint's: `connected` on open; the client sends `{"auth":
"name:session"}`; then `history` (the state at once), `current` whenever something changed but
at most once every BASE_RATE seconds times the client's `{"throttle": n}` (with the printer's
lines since the last one, oks left out, in `logs`), and `event` (`{type, payload}`) for every
bus event. `subscribe` narrows state and events as OctoPrint's does. Before auth a socket gets
nothing but `connected`, for AUTH_WAIT seconds at most; a wrong auth gets `reauthRequired` and
the socket is closed with the reason. `plugin` messages are never sent.

hypercorn speaks the websocket protocol (wsproto); nothing here frames bytes. Each socket has
one bus subscriber, taken where the event stream takes its own (stream.py): a bounded queue,
and a socket that does not keep up is dropped, never waited for. One task writes, so `current`
messages never pile up behind a slow client, and the server's write deadline (server.py) drops
a client that takes no data at all.
"""

from __future__ import annotations

import hashlib
import logging
import math
import platform
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import trio
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from pipeline.app.http.camera.timelapse import timelapse_config
from pipeline.app.http.context import Api, peer_address
from pipeline.app.http.job import job_of, progress_of
from pipeline.app.http.printer import OCTOPRINT_API_LEVEL, printer_state
from pipeline.app.http.push.framing import Raw, SockJS, sockjs_info
from pipeline.app.http.push.login import sessions_of
from pipeline.app.http.stream import client_subscription, overflowed
from pipeline.app.http.support import BadRequest, parse_json_object
from pipeline.app.printers.status import Status
from pipeline.events.names import Event, canonical
from pipeline.fanout.bus import Subscription

log = logging.getLogger("printpipe.http")

#: Seconds between `current` messages at throttle 1: OctoPrint's rate limit.
BASE_RATE = 0.5
#: The largest throttle factor taken (a `current` at most every minute).
MAX_THROTTLE = 120
#: The largest message a client may send (theirs are a few bytes: auth, throttle, subscribe).
MAX_MESSAGE = 64 * 1024
#: The most printer lines (`logs`) one `current` carries: the newest.
MAX_LOG_LINES = 300
#: Seconds a socket may stay open without authenticating (OctoPrint sets no limit; every
#: socket holds tasks and a bus subscriber, and anyone on the network may open one).
AUTH_WAIT = 60.0
#: Bytes a websocket close reason may have (RFC 6455: a control frame's 125, less the code).
MAX_REASON = 123


# ---- what the socket sends ----------------------------------------------------------------
def connected_payload(api: Api) -> dict[str, Any]:
    """OctoPrint's `connected` fields (no key of any kind: the UI key it once sent is gone),
    and printpipe's `printer`: the printer's name."""
    # of the settings without the key: the socket tells anyone who opens it
    keyless = attrs.evolve(api.config, http=attrs.evolve(api.config.http, api_key=None))
    config = hashlib.md5(repr(keyless).encode(), usedforsecurity=False).hexdigest()
    return {"version": OCTOPRINT_API_LEVEL,
            "display_version": f"{OCTOPRINT_API_LEVEL} (printpipe {api.version})",
            "branch": None, "python_version": platform.python_version(),
            "plugin_hash": hashlib.md5(b"", usedforsecurity=False).hexdigest(),
            "config_hash": config, "debug": False, "safe_mode": None, "online": None,
            "permissions": [], "printer": api.control.name}


def state_payload(api: Api, status: Status) -> dict[str, Any]:
    """The state part of `current` and `history`, from the snapshots `/api/printer` and
    `/api/job` answer with."""
    stats = api.control.statistics()
    sent, resends = (stats.lines_sent, stats.resends) if stats else (0, 0)
    out = {"state": printer_state(status, api.control.sd.ready), "job": job_of(api, status),
           "progress": progress_of(status),
           "currentZ": api.control.current_z, "offsets": dict(api.control.temperature_offsets),
           "resends": {"count": resends, "transmitted": sent,
                       "ratio": round(100 * resends / sent) if sent else 0}}
    if status.plugins:
        out["plugins"] = dict(status.plugins)
    return out


def temperatures(status: Status) -> dict[str, dict[str, float | None]]:
    """The heaters the printer reported, actual and target (a data point without its time)."""
    return {name: {"actual": t.get("actual"), "target": t.get("target")}
            for name, t in status.temperatures.items()
            if t.get("actual") is not None or t.get("target") is not None}


def busy_files(status: Status) -> list[dict[str, str]]:
    job = status.job
    if job is None or not job.active:
        return []
    return [{"origin": job.file.origin, "path": job.file.path}]


def close_reason(text: str) -> str:
    """`text` cut to what a close frame carries, on a character boundary."""
    return text.encode()[:MAX_REASON].decode(errors="ignore")


# ---- the socket ---------------------------------------------------------------------------
class PushSocket:
    """One client: a reader task takes its messages and pokes the writer, which sends
    everything (events as they come, `current` at the rate limit) and closes the socket."""

    def __init__(self, api: Api, ws: WebSocket, sub: Subscription, framing: Raw) -> None:
        self.api = api
        self.ws = ws
        self.framing = framing
        self.next_beat = math.inf
        self.sub = sub
        self.user: str | None = None
        self.throttle = 1
        self.state_wanted = True          # until a `subscribe` says otherwise
        self.events_wanted: frozenset[str] | None = None  # None: every event
        self.history_due = False
        self.refusal: tuple[int, str] | None = None  # close code and reason
        self.wait = trio.CancelScope()    # the writer's wait; the reader cancels it to poke
        self.last_state: dict[str, Any] | None = None
        self.last_temps: dict[str, Any] | None = None
        self.next_current = math.inf
        self.auth_deadline = trio.current_time() + AUTH_WAIT
        self.lines: deque[str] = deque(maxlen=MAX_LOG_LINES)  # received since the last current
        self.unwatch: Callable[[], None] | None = None
        self.ignored = 0                  # messages ignored (logged: the first only)
        self.timelapse_sent = -1          # the camera's config version last sent

    async def serve(self) -> None:
        await self.framing.open()
        await self.send("connected", connected_payload(self.api))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.read, nursery.cancel_scope)
                await self.write()
                nursery.cancel_scope.cancel()
        finally:
            if self.unwatch is not None:
                self.unwatch()

    # ---- reading ------------------------------------------------------------------------
    async def read(self, done: trio.CancelScope) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                done.cancel()
                return
            text = message.get("text")
            data = text.encode() if text is not None else message.get("bytes") or b""
            if len(data) > MAX_MESSAGE:
                self.refuse(1009, f"a message of {len(data)} bytes: the limit is {MAX_MESSAGE}")
            else:
                for one in self.framing.messages(data):
                    self.handle(one)
            self.wait.cancel()

    def refuse(self, code: int, reason: str) -> None:
        """Close the socket with `code` and `reason` (the writer does it next)."""
        self.refusal = (code, reason)

    def ignore(self, what: str, *args: object) -> None:
        """Log the first message ignored (a client that sends nonsense in a loop does not fill
        the log)."""
        self.ignored += 1
        if self.ignored == 1:
            log.info("%s: ignored %s (further ones are ignored silently)", self.sub.name,
                     what % args)

    def handle(self, data: bytes) -> None:
        try:
            message = parse_json_object(data)
        except BadRequest as exc:
            self.ignore("a message: %s", exc.message)
            return
        # one message may carry several (OctoPrint takes only the first): auth comes last,
        # so it starts what the others asked for
        if "throttle" in message:
            self.set_throttle(message["throttle"])
        if "subscribe" in message:
            self.subscribe(message["subscribe"])
        if "auth" in message:
            self.auth(message["auth"])

    def auth(self, value: Any) -> None:
        if not isinstance(value, str) or value.count(":") != 1:
            self.refuse(1008, "auth must be the string 'name:session' (session from "
                              "POST /api/login)")
            return
        name, token = value.split(":")
        api = self.api
        if not sessions_of(api).check(name, token, api.keys, anonymous=api.anonymous):
            log.warning("%s: refused auth as %r: no such session, or it expired",
                        self.sub.name, name[:100])
            self.refuse(1008, "unknown or expired session: log in again (POST /api/login "
                              f"{{\"passive\": true}}) for {name}")
            return
        if self.user is None:
            log.info("%s authenticated as %s", self.sub.name, name)
            api.control.publish(Event.CLIENT_AUTHED, {"remoteAddress": peer_address(
                self.ws.scope), "username": name})
            self.sub.events = self.events_wanted
            self.history_due = self.state_wanted
            self.unwatch = api.control.watch_lines(self.lines.append)
        self.user = name

    def set_throttle(self, value: Any) -> None:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or value != int(value) or not 1 <= value <= MAX_THROTTLE):
            self.ignore("throttle %.100r (a whole number 1..%d)", value, MAX_THROTTLE)
            return
        self.throttle = int(value)

    def subscribe(self, value: Any) -> None:
        """OctoPrint's `subscribe`: `state` (a bool, or an object: on) and `events` (a bool
        or a list of names), both off when left out."""
        events = value.get("events", False) if isinstance(value, dict) else None
        wanted: frozenset[str] | None
        if isinstance(events, bool):
            wanted = None if events else frozenset()
        elif isinstance(events, list) and all(isinstance(e, str) for e in events):
            wanted = frozenset(canonical(e) for e in events)
        else:
            self.ignore("subscribe %.100r (an object with state and events)", value)
            return
        assert isinstance(value, dict)
        state = bool(value.get("state", False))
        self.history_due = state and (self.history_due or (
            not self.state_wanted and self.user is not None))
        self.state_wanted, self.events_wanted = state, wanted
        if self.user is not None:
            self.sub.events = wanted

    # ---- writing ------------------------------------------------------------------------
    async def send(self, kind: str, payload: dict[str, Any]) -> None:
        await self.framing.send(kind, payload)
        self.next_beat = self.beat_after()

    def beat_after(self) -> float:
        beat = self.framing.heartbeat
        return math.inf if beat is None else trio.current_time() + beat

    async def write(self) -> None:
        while True:
            if self.refusal is not None:
                code, reason = self.refusal
                if code == 1008:  # what OctoPrint's clients act on: log in again
                    await self.send("reauthRequired", {"reason": "stale"})
                await self.framing.close(code, close_reason(reason))
                return
            if self.history_due:
                self.history_due = False
                await self.send_state("history")
            if self.user is not None and self.timelapse_sent != self.api.control.camera.version:
                await self.send_timelapse()  # once authed, and after each change
            ev = None
            deadline = self.next_current if self.state_wanted else math.inf
            if self.user is None:
                deadline = self.auth_deadline
            if trio.current_time() >= self.next_beat:
                await self.framing.beat()
                self.next_beat = self.beat_after()
            with trio.CancelScope(deadline=min(deadline, self.next_beat)) as self.wait:
                try:
                    ev = await self.sub.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    await self.framing.close(1001, "printpipe is shutting down")
                    return
            if overflowed(self.sub, "client"):
                await self.framing.close(1008, f"too slow: {self.sub.dropped} events dropped")
                return
            if ev is not None and self.user is not None and self.sub.events != frozenset():
                await self.send("event", {"type": ev.name, "payload": ev.payload})
            elif ev is None and self.user is None:
                if trio.current_time() >= self.auth_deadline:
                    self.refuse(1008, f"no auth within {AUTH_WAIT:g} s: the first message must "
                                      "be {\"auth\": \"name:session\"}")
            elif ev is None and trio.current_time() >= self.next_current:
                await self.send_state("current")

    async def send_timelapse(self) -> None:
        """`timelapse`: the timelapse config (None when off), as OctoPrint sends it."""
        camera = self.api.control.camera
        self.timelapse_sent = camera.version
        if not (camera.active or camera.version):
            return  # no timelapse configured, none changed: nothing to say
        await self.framing.send("timelapse", timelapse_config(camera))

    async def send_state(self, kind: str) -> None:
        """`history`, or `current` if anything changed since the last one."""
        self.next_current = trio.current_time() + BASE_RATE * self.throttle
        status = self.api.control.status()
        state = state_payload(self.api, status)
        temps = temperatures(status)
        new_temps = temps != self.last_temps
        if kind == "current" and state == self.last_state and not new_temps and not self.lines:
            return
        self.last_state, self.last_temps = state, temps
        logs = [f"Recv: {line}" for line in self.lines] if kind == "current" else []
        self.lines.clear()
        now = time.time()
        payload = {**state, "serverTime": now, "logs": logs, "messages": [],
                   "temps": [{"time": int(now), **temps}]
                   if temps and (new_temps or kind == "history") else []}
        if kind == "current":
            payload["busyFiles"] = busy_files(status)
        await self.send(kind, payload)


async def push_socket(ws: WebSocket) -> None:
    """The raw transport: one JSON object per message."""
    await serve_socket(ws, Raw(ws))


async def sockjs_socket(ws: WebSocket) -> None:
    """SockJS's framed websocket transport (`o`, `h`, `a[...]`, `c[...]`)."""
    await serve_socket(ws, SockJS(ws))


async def serve_socket(ws: WebSocket, framing: Raw) -> None:
    api: Api = ws.app.state.api
    await ws.accept()
    # the bus delivers nothing but Shutdown until the client authenticates
    with client_subscription(api, ws.scope, "push", events=frozenset()) as sub:
        await PushSocket(api, ws, sub, framing).serve()


ROUTES = [WebSocketRoute("/sockjs/websocket", push_socket),
          WebSocketRoute("/sockjs/{server}/{session}/websocket", sockjs_socket),
          Route("/sockjs/info", sockjs_info, methods=["GET"])]
