"""What `printpipe serve` checks before it starts anything, so that each way a start can fail is
one line naming the problem and the next step instead of a traceback half-way through: the
config's own problems that loading cannot see (`config_problems`, which `printpipe check`
asks too, so check passes exactly what serve starts with), the address to listen on (a port
another program holds, a host that is not this machine's), the storage and state folders
(missing rights), and the first-start key message (never the whole key anywhere but a
terminal). Also `quit_now`, the second Ctrl-C of every command.

Config mistakes raise ConfigError (the command exits 2, and the unit's
RestartPreventExitStatus=2 stops systemd from retrying a config that cannot work); the rest
raise HostError (exit 1: systemd retries, the program holding the port may go away).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import sys
import tempfile
from typing import TYPE_CHECKING, TextIO

from pipeline.app.keys import redact
from pipeline.app.mqtt.client import tls_problem
from pipeline.config.reader import HostConfig
from pipeline.errors import ConfigError, ConfigErrors, HostError
from pipeline.fanout.subscriptions import check_custom_events
from pipeline.hooks.chain import Pipeline
from pipeline.hooks.host_phases import custom_event_names

if TYPE_CHECKING:
    from hypercorn.config import Config as HypercornConfig

#: The exit code of a command stopped by a second Ctrl-C (as the shell's for SIGINT).
INTERRUPTED = 130
#: The exit code of `printpipe print` and `recover` stopped by SIGTERM (as the shell's).
TERMINATED = 143
_HOSTS_HINT = "use 0.0.0.0 to serve every network, or 127.0.0.1 for this machine only"


def config_problems(config: HostConfig, pipeline: Pipeline) -> list[ConfigError]:
    """Every reason `serve` refuses a config that loaded and whose `pipeline` was built: the
    API without keys on a non-loopback host, subscriptions to custom events no stage
    registers, MQTT TLS files that cannot be used."""
    problems: list[ConfigError] = []
    http = config.http
    if http.allow_anonymous and not is_loopback(http.host):
        problems.append(ConfigError(
            f"http.allow_anonymous needs a loopback host, not {http.host!r}: anyone on the "
            "network could drive the printer", path=config.path, key="http.allow_anonymous"))
    try:
        check_custom_events(config.events, custom_event_names(pipeline))
    except ConfigErrors as exc:
        problems.extend(exc.errors)
    if config.mqtt is not None:
        tls = tls_problem(config.mqtt, config.path)
        if tls is not None:
            problems.append(tls)
    return problems


def refuse_problems(config: HostConfig, pipeline: Pipeline) -> None:
    """Raise ConfigErrors with config_problems(), if there are any."""
    problems = config_problems(config, pipeline)
    if problems:
        raise ConfigErrors(problems)


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_error(exc: OSError, config: HostConfig) -> HostError:
    """The one-line error for a failed bind of http.host:http.port."""
    host, port = config.http.host, config.http.port
    if isinstance(exc, socket.gaierror):
        return ConfigError(f"http.host {host!r} is not a name of this machine ({exc.strerror}): "
                           f"{_HOSTS_HINT}", path=config.path, key="http.host")
    if exc.errno == errno.EADDRINUSE:
        return HostError(f"port {port} on {host} is in use by another program (OctoPrint, or "
                         "printpipe already running?): stop it (sudo systemctl stop octoprint) "
                         f"or set http.port in {config.path}")
    if exc.errno == errno.EADDRNOTAVAIL:
        return HostError(f"http.host {host} is not an address of this machine (yet?): "
                         f"{_HOSTS_HINT} ({config.path})")
    if exc.errno == errno.EACCES:
        return HostError(f"port {port} needs root (ports below 1024): set http.port to 5000 "
                         f"or another port above 1023 in {config.path}")
    return HostError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def check_listen(hc: HypercornConfig, config: HostConfig) -> None:
    """Bind (and close again) what the HTTP server will bind. Raises listen_error's error."""
    try:
        sockets = hc.create_sockets()
    except OSError as exc:
        raise listen_error(exc, config) from None
    for sock in sockets.insecure_sockets:
        sock.close()


def check_writable(folder: str, key: str, config: HostConfig) -> None:
    """Make `folder` if it is missing and check that this user can write in it."""
    user = _user()
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".check-"):
            pass
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise HostError(f"cannot write in {folder} ({key} in {config.path}): {why}; the user "
                        f"printpipe runs as ({user}) must be able to write there, or set "
                        f"{key} to a folder it owns") from None


def _user() -> str:
    try:
        import pwd
        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


def announce_key(key: str, created: bool, configured: bool, path: str, out: TextIO) -> None:
    """Say which API key clients use, redacted: the whole key is shown by `printpipe keys
    show` on a terminal only, never in a log, the journal or a file output went to."""
    if created:
        print(f"printpipe: a new API key {redact(key)} was generated and stored in {path} "
              "(0600); `sudo printpipe keys show` prints it: give it to your slicer as the "
              "OctoPrint API key", file=out)
    else:
        source = "http.api_key" if configured else path
        print(f"printpipe: API key {redact(key)} (from {source})", file=out)
    out.flush()


def quit_now() -> None:
    """The second Ctrl-C: leave at once. The kernel closes the port and the sockets."""
    sys.stderr.write("\nprintpipe: interrupted again: quitting at once\n")
    sys.stderr.flush()
    os._exit(INTERRUPTED)
