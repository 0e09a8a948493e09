"""`printpipe keys list|approve TOKEN|deny TOKEN|revoke APP|show`: the person's side of the
appkeys flow, and the service's own key.

An application (Home Assistant, a slicer) asks the running host for a key; the request waits
until someone approves or denies it here, in another process, through the same `keys.json` in
the state folder. Only `pipeline.appkeys` touches that file. Keys are printed redacted, never in
full (but `show` prints the service's key for giving it to a slicer, on a terminal only:
redacted into a file or a pipe); tokens are printed in
full because people type them (a unique 6-character prefix will do). Run as root (sudo) on the
service's state folder, the store keeps its files owned by the folder's owner (app/keys.py).
"""

from __future__ import annotations

import argparse
import enum
import sys
import time
from typing import Any, TextIO

from pipeline.app.keys import KeyStore, KeyStoreError, redact


class KeysAction(enum.Enum):
    LIST = "list"
    APPROVE = "approve"
    DENY = "deny"
    REVOKE = "revoke"
    SHOW = "show"


_TAKES_ARG = {KeysAction.APPROVE: "TOKEN", KeysAction.DENY: "TOKEN", KeysAction.REVOKE: "APP"}


def add_keys_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the `keys` subcommand to `sub` (the result of `parser.add_subparsers()`)."""
    p = sub.add_parser("keys", help="list, approve, deny or revoke application API keys; "
                                    "show the API key")
    p.add_argument("-c", "--config", help="YAML config, for its state folder (default: the "
                                          "installed /etc/printpipe/printer.yaml if there is "
                                          "one, else the built-in defaults)")
    p.add_argument("action", choices=[a.value for a in KeysAction],
                   help="list requests and keys, approve or deny a request, revoke a key, "
                        "show the service's API key in full (on a terminal; redacted otherwise)")
    p.add_argument("arg", nargs="?",
                   help="the request TOKEN (approve, deny) or the APP name or key prefix (revoke)")
    p.add_argument("--printer", help="approve: limit the key to this printer of the service "
                                     "(default: every printer)")
    return p


def run_keys(action: str, arg: str | None, state_folder: str, out: TextIO | None = None,
             err: TextIO | None = None, *, configured_key: str | None = None,
             printer: str | None = None) -> int:
    """Run one `printpipe keys` action on the key store in `state_folder`.

    Returns:
        0 on success; 2 after printing one line to `err` on any error.
    `out`/`err` default to sys.stdout/sys.stderr as they are at call time.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        which = KeysAction(action)
    except ValueError:
        choices = ", ".join(a.value for a in KeysAction)
        print(f"printpipe keys: unknown action {action!r} (choose from {choices})", file=err)
        return 2
    wanted = _TAKES_ARG.get(which)
    if wanted and not arg:
        print(f"printpipe keys: {which.value} needs {wanted}", file=err)
        return 2
    if not wanted and arg:
        print(f"printpipe keys: {which.value} takes no argument (got {arg!r})", file=err)
        return 2
    store = KeyStore(state_folder)
    try:
        if which is KeysAction.LIST:
            _list(store, out)
            print(f"(key store: {store.path})", file=out)
        elif which is KeysAction.SHOW:
            master = configured_key or store.master()
            if master is None:
                print(f"printpipe keys: no API key in {store.path} yet: `printpipe serve` makes "
                      "one at its first start", file=err)
                return 1
            if out.isatty():
                print(master, file=out)
            else:  # a file or a pipe keeps it, a log may show it: only a terminal sees it
                print(redact(master), file=out)
                where = ("the config's http.api_key" if configured_key
                         else f"in {store.path}, mode 0600")
                print("printpipe keys: the key is shown in full on a terminal only (it is "
                      f"{where})", file=err)
        elif which is KeysAction.APPROVE:
            granted = store.approve(str(arg), printer)
            only = f" for printer {printer}" if printer else ""
            print(f"approved {granted.app!r}{only}: key {redact(granted.key)} "
                  "(the application collects it when it next polls)", file=out)
        elif which is KeysAction.DENY:
            store.deny(str(arg))
            print(f"denied request {arg}", file=out)
        else:
            gone = store.revoke(str(arg))
            for key in gone:
                print(f"revoked {key.app!r}: key {redact(key.key)}", file=out)
    except KeyStoreError as exc:
        print(f"printpipe keys: {exc}", file=err)
        return 2
    return 0


def _list(store: KeyStore, out: TextIO) -> None:
    now = store.clock()
    requests = store.pending()
    if requests:
        print("pending requests (printpipe keys approve TOKEN | deny TOKEN):", file=out)
        for r in requests:
            user = f"  user {r.user}" if r.user else ""
            print(f"  {r.token}  {r.app!r}{user}  {_age(now - r.created)} ago", file=out)
    else:
        print("no pending requests", file=out)
    keys = store.keys()
    if keys:
        print("application keys (printpipe keys revoke APP):", file=out)
        for k in keys:
            created = time.strftime("%Y-%m-%d %H:%M", time.localtime(k.created))
            print(f"  {k.app!r}  {redact(k.key)}  created {created}", file=out)
    else:
        print("no application keys", file=out)


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
