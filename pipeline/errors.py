"""The printpipe error hierarchy: every error says who is at fault and where.

Config errors carry file:line, script errors script:line and link errors the port; what a
stage does wrong is logged with its id, never raised (a stage never stops the printer).
Nothing here imports anything but the standard library; every other module may import it.
"""

from __future__ import annotations


class HostError(Exception):
    """Base of every error printpipe raises on purpose."""


class ConfigError(HostError):
    """The YAML configuration is wrong: names the file, the line and the key."""

    def __init__(self, message: str, *, path: str = "<config>", line: int | None = None,
                 key: str | None = None) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        key = f" [{self.key}]" if self.key else ""
        return f"{where}:{key} {self.message}"


class ConfigErrors(HostError):
    """Several config problems found in one pass (`printpipe check` reports all of them)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class ScriptError(HostError):
    """A G-code script failed to compile or render: names the script and its line."""

    def __init__(self, message: str, *, script: str, line: int | None = None) -> None:
        self.message = message
        self.script = script
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.script if self.line is None else f"{self.script}:{self.line}"
        return f"script {where}: {self.message}"




class CommandRefused(HostError):
    """A command that must not reach the printer (several lines in one, too long, not a
    finite number, a heater target over its limit): nothing of the request was queued."""


class LocalProtocolError(HostError):
    """The host asked the protocol engine for something its state forbids."""


class LinkError(HostError):
    """Base of serial link failures; names the port."""

    def __init__(self, message: str, *, port: str) -> None:
        self.message = message
        self.port = port
        super().__init__(f"link {port}: {message}")


class LinkClosed(LinkError):
    """We closed the link ourselves."""


class LinkBroken(LinkError):
    """The device went away or failed (EOF, EIO, ENXIO); the OS error is chained."""
