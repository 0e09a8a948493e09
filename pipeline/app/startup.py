"""What `printpipe serve` checks before it starts anything, so that each way a start can fail is
one line naming the problem and the next step instead of a traceback half-way through: the
address to listen on (a port another program holds, a host that is not this machine's), the
storage and state folders (missing rights), and the first-start key message (never the whole
key into the journal). Also `quit_now`, the second Ctrl-C of every command.

Config mistakes raise ConfigError (the command exits 2, and the unit's
RestartPreventExitStatus=2 stops systemd from retrying a config that cannot work); the rest
raise HostError (exit 1: systemd retries, the program holding the port may go away).
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import tempfile
from typing import TYPE_CHECKING, TextIO

from pipeline.app.keys import redact
from pipeline.config.reader import HostConfig
from pipeline.errors import ConfigError, HostError

if TYPE_CHECKING:
    from hypercorn.config import Config as HypercornConfig

#: The exit code of a command stopped by a second Ctrl-C (as the shell's for SIGINT).
INTERRUPTED = 130
#: The exit code of `printpipe print` and `recover` stopped by SIGTERM (as the shell's).
TERMINATED = 143
_HOSTS_HINT = "use 0.0.0.0 to serve every network, or 127.0.0.1 for this machine only"


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


def under_journald() -> bool:
    """Whether our output goes to the systemd journal (systemd sets JOURNAL_STREAM)."""
    return bool(os.environ.get("JOURNAL_STREAM"))


def announce_key(key: str, created: bool, configured: bool, path: str, out: TextIO) -> None:
    """Say which API key clients use. A generated key is shown in full once on a console, but
    never written to the journal (it stays on the SD card for anyone who reads logs)."""
    if created and not under_journald():
        print(f"printpipe: a new API key was generated and stored in {path} (0600):\n"
              f"    {key}\nGive it to your slicer as the OctoPrint API key.", file=out)
    elif created:
        print(f"printpipe: a new API key {redact(key)} was generated and stored in {path} "
              "(0600); `sudo printpipe keys show` prints it", file=out)
    else:
        source = "http.api_key" if configured else path
        print(f"printpipe: API key {redact(key)} (from {source})", file=out)
    out.flush()


def quit_now() -> None:
    """The second Ctrl-C: leave at once. The kernel closes the port and the sockets."""
    sys.stderr.write("\nprintpipe: interrupted again: quitting at once\n")
    sys.stderr.flush()
    os._exit(INTERRUPTED)
