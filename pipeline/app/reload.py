"""What a config reload changes, and when each change takes effect.

`changed_keys(old, new)` lists the settings that differ, as dotted keys down to the leaves
(`http.api_key`, `serial.timeouts.communication`); where a setting was declared (line numbers)
is not a change. A `Reloader` answers for every changed key whether it applied at once, waits
for the printer to reconnect, or waits for a restart, and why, then runs the live appliers of
the keys that changed. Only the edges (app/) use it; it does no IO itself.

An applier is registered for a key prefix with one line where the thing it updates is built:

    control.reloader.live("mqtt", bridge.reconfigure)   # called as reconfigure(old, new)

A key matched by a WAITS rule waits (the longest prefix wins) even when an applier also runs
for it (the pipeline: the file stages apply at once, the printer session keeps its own); a
changed key that neither matches waits for a restart.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from pipeline.config.reader import HostConfig
from pipeline.config.schema import SourceLocation
from pipeline.errors import HostError

log = logging.getLogger("printpipe.reload")

#: How a live applier is called: with the running config and the new one.
Apply = Callable[[HostConfig, HostConfig], None]


class Takes(enum.Enum):
    LIVE = "live"
    RECONNECT = "reconnect"
    RESTART = "restart"


@attrs.frozen
class Wait:
    takes: Takes
    why: str


_SESSION = "the open printer session was set up with the old value when it connected"

#: The settings that cannot change under a running service, by key prefix, and why.
WAITS: Mapping[str, Wait] = {
    "http.host": Wait(Takes.RESTART, "the HTTP server binds its address when printpipe starts"),
    "http.port": Wait(Takes.RESTART, "the HTTP server binds its port when printpipe starts"),
    "http.allow_anonymous": Wait(Takes.RESTART, "serving with or without keys is decided "
                                                "when printpipe starts"),
    "storage.state": Wait(Takes.RESTART, "the state folder holds the API keys, the instance "
                                         "uuid and the print history, read when printpipe "
                                         "starts"),
    "printer": Wait(Takes.RECONNECT, "the port, baud rate and printer profile are used when "
                                     "the printer connects"),
    "serial": Wait(Takes.RECONNECT, f"serial settings: {_SESSION}"),
    "virtual": Wait(Takes.RECONNECT, "the virtual printer starts with the printer session"),
    "pipeline": Wait(Takes.RECONNECT, f"the printer's stages: {_SESSION} (file-type, "
                                      "system-command and custom-event stages applied at "
                                      "once)"),
    "scripts": Wait(Takes.RECONNECT, f"G-code scripts: {_SESSION}"),
}
_UNKNOWN = Wait(Takes.RESTART, "printpipe reads this setting only when it starts")


@attrs.frozen
class Change:
    key: str
    takes: Takes
    why: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "why": self.why}


@attrs.frozen
class ReloadReport:
    """The answer of a reload: which changed settings apply now, and which wait for what."""

    changes: tuple[Change, ...]
    connected: bool
    failed: tuple[Change, ...] = ()  # live changes whose applier failed (why: its error)

    def of(self, takes: Takes) -> list[Change]:
        return [c for c in self.changes if c.takes is takes]

    def to_json(self) -> dict[str, Any]:
        reconnect = self.of(Takes.RECONNECT)
        restart = self.of(Takes.RESTART)
        return {"reloaded": True, "changed": [c.key for c in self.changes],
                "applied": [c.key for c in self.of(Takes.LIVE)],
                "reconnect": [c.to_json() for c in reconnect],
                "restart": [c.to_json() for c in restart],
                "failed": [c.to_json() for c in self.failed],
                "reconnect_needed": bool(reconnect), "restart_needed": bool(restart)}


@attrs.frozen
class ServiceReload:
    """What a reload of the whole service did: each running printer's report, the printers
    it started and stopped."""

    reports: Mapping[str, ReloadReport]
    added: tuple[str, ...]
    removed: tuple[str, ...]


class Reloader:
    def __init__(self, waits: Mapping[str, Wait] = WAITS) -> None:
        self._waits = dict(waits)
        self._live: dict[str, list[Apply]] = {}

    def live(self, prefix: str, apply: Apply) -> None:
        """Apply changes under `prefix` (a section, or one key) at once with `apply`."""
        self._live.setdefault(prefix, []).append(apply)

    def report(self, old: HostConfig, new: HostConfig, *, connected: bool) -> ReloadReport:
        """What reloading `new` over `old` does. Settings waiting for a reconnect count as
        applied when no printer is connected: the next connect uses them."""
        changes = []
        for key in changed_keys(old, new):
            wait = _match(self._waits, key)
            if wait is None:
                wait = None if _match(self._live, key) is not None else _UNKNOWN
            if wait is None or (wait.takes is Takes.RECONNECT and not connected):
                changes.append(Change(key, Takes.LIVE))
            else:
                changes.append(Change(key, wait.takes, wait.why))
        return ReloadReport(tuple(changes), connected)

    def apply(self, old: HostConfig, new: HostConfig) -> tuple[Change, ...]:
        """Run the appliers whose keys changed, in the order registered. One that fails
        (HostError, OSError) does not stop the others; the failures are returned."""
        changed = changed_keys(old, new)
        failed = []
        for prefix, appliers in self._live.items():
            if any(_under(key, prefix) for key in changed):
                for apply in appliers:
                    try:
                        apply(old, new)
                    except (HostError, OSError) as exc:
                        log.error("reload: applying %s failed: %s", prefix, exc)
                        failed.append(Change(prefix, Takes.LIVE, str(exc)))
        return tuple(failed)


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def _match(table: Mapping[str, Any], key: str) -> Any:
    """The value of the longest prefix of `key` in `table`, or None."""
    best = max((p for p in table if _under(key, p)), key=len, default=None)
    return None if best is None else table[best]


#: A printer's own value of a shared setting (HostConfig fields), reported as that setting.
_EFFECTIVE = {"http_port": "http.port"}


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ, down through attrs specs; a config's `path` and
    declaration places (SourceLocation) are not settings."""
    if attrs.has(type(old)) and type(old) is type(new) and not isinstance(old, SourceLocation):
        out: list[str] = []
        for field in attrs.fields(type(old)):
            if field.name == "path" and isinstance(old, HostConfig):
                continue
            key = f"{prefix}.{field.name}" if prefix else field.name
            if isinstance(old, HostConfig) and field.name in _EFFECTIVE:
                key = _EFFECTIVE[field.name]  # the value the setting has for this printer
            out += changed_keys(getattr(old, field.name), getattr(new, field.name), key)
        return list(dict.fromkeys(out))
    return [] if _plain(old) == _plain(new) else [prefix]


def _plain(value: Any) -> Any:
    """`value` as comparable plain data, without declaration places."""
    if isinstance(value, SourceLocation):
        return None
    if attrs.has(type(value)):
        return (type(value).__name__, {f.name: _plain(getattr(value, f.name))
                                       for f in attrs.fields(type(value))})
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
