"""The API key store: the master key and the application keys granted through the appkeys flow.

Everything lives in `<state folder>/keys.json` (mode 0600, folder 0700), written atomically
(temp file in the same folder, fsync, os.replace) under an exclusive lock on `keys.lock`, so the
running host and `printpipe keys approve` in another process never lose each other's changes.
State is re-read whenever the file changed. Synchronous small-file IO, no trio. A key is never
logged, printed or repr'd in full: use `redact()`. A corrupt file is an error, never a reset.

The request endpoint is open to the network, so requests are capped (in all, and per client
address), and polling writes nothing: the host keeps poll times in memory and stores one only
when the stored one has grown stale (a quarter of the timeout), so another process (`printpipe
keys`) still sees a polled request as alive.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from pipeline.errors import HostError
from pipeline.files.atomic import write_atomically

FILE_NAME = "keys.json"
LOCK_NAME = "keys.lock"
FORMAT_VERSION = 1
MIN_TOKEN_PREFIX = 6
MIN_KEY_PREFIX = 4
MAX_APP_NAME = 100


class KeyStoreError(HostError):
    """The key store refuses: a corrupt keys.json (names the file), an unknown token or app."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.message = message
        self.path = path
        super().__init__(message if path is None else f"{path}: {message}")


class KeyRequestLimit(KeyStoreError):
    """Too many pending key requests, in all or from one client address (HTTP 429)."""


class RequestState(enum.Enum):
    PENDING = "pending"
    GRANTED = "granted"
    DENIED = "denied"


class PollResult(enum.Enum):
    PENDING = "pending"
    GRANTED = "granted"
    DENIED = "denied"
    UNKNOWN = "unknown"   # no such token, or it expired


def redact(key: str) -> str:
    """The first 4 characters and an ellipsis (fewer for short keys: at most a quarter shows)."""
    return key[:min(4, len(key) // 4)] + "…"


def _redacted_or_none(key: str | None) -> str:
    return "None" if key is None else repr(redact(key))


@attrs.frozen
class AppKey:
    app: str                                       # the application's name: its identity
    key: str = attrs.field(repr=_redacted_or_none)
    created: float
    printer: str | None = None                     # the one printer it may act on (None: all)


@attrs.frozen
class PendingRequest:
    token: str
    app: str
    user: str | None
    created: float
    polled: float
    state: RequestState
    key: str | None = attrs.field(default=None, repr=_redacted_or_none)  # GRANTED, uncollected
    client: str | None = None                      # the address the request came from


@attrs.frozen
class _State:
    master: str | None = None
    keys: tuple[AppKey, ...] = ()
    requests: tuple[PendingRequest, ...] = ()


_Cached = tuple[tuple[int, int, int], float, _State]


@attrs.define(eq=False)
class KeyStore:
    """The keys in one state folder. Every read sees changes other processes made."""

    folder: str
    configured_key: str | None = attrs.field(default=None, kw_only=True, repr=_redacted_or_none)
    clock: Callable[[], float] = attrs.field(default=time.time, kw_only=True)
    request_timeout: float = attrs.field(default=60.0, kw_only=True)   # unpolled -> expired
    max_pending: int = attrs.field(default=20, kw_only=True)  # the request endpoint is open
    max_per_client: int = attrs.field(default=3, kw_only=True)  # pending from one address
    _cache: _Cached | None = attrs.field(default=None, init=False)  # (stat stamp, read at, state)
    _polled: dict[str, float] = attrs.field(factory=dict, init=False)  # token -> last poll

    @property
    def path(self) -> str:
        return os.path.join(self.folder, FILE_NAME)

    def ensure_master(self) -> tuple[str, bool]:
        """(master key, newly created): the configured key (never stored), else the stored
        one, else a new one, stored before it is returned."""
        if self.configured_key:
            return self.configured_key, False
        master = self._read().master
        if master:
            return master, False
        with self._update() as state:
            if state.master:    # another process got there first
                return state.master, False
            master = secrets.token_urlsafe(32)
            self._write(attrs.evolve(state, master=master))
        return master, True

    def master(self) -> str | None:
        """The stored master key, None before the first `printpipe serve` made one."""
        return self._read().master

    def identify(self, key: str, printer: str | None = None) -> str | None:
        """Who `key` belongs to: "master", an app's name, or None for an unknown key (and for
        an app key limited to another printer than `printer`)."""
        if not key:
            return None
        state = self._read()
        master = self.configured_key or state.master
        found = None
        # compare against every key, so the time taken says nothing about which one matched
        if master and _same(key, master):
            found = "master"
        for app_key in state.keys:
            if (_same(key, app_key.key) and found is None
                    and (app_key.printer is None or printer in (None, app_key.printer))):
                found = app_key.app
        return found

    def request(self, app: str, user: str | None = None, *, client: str | None = None) -> str:
        """Open a pending request for `app`; returns its token (the app polls with it).

        Raises:
            KeyRequestLimit: `max_pending` requests are waiting, or `max_per_client` from
                `client` (the caller's address; None for no per-address limit).
            KeyStoreError: an empty or unprintable app or user name.
        """
        _check_name("app name", app)
        if user is not None:
            _check_name("user name", user)
        now = self.clock()
        with self._update() as state:
            waiting = [r for r in state.requests if r.state is RequestState.PENDING]
            if len(waiting) >= self.max_pending:
                raise KeyRequestLimit(f"too many pending key requests ({len(waiting)})")
            if (client is not None and
                    sum(r.client == client for r in waiting) >= self.max_per_client):
                raise KeyRequestLimit(f"too many pending key requests from {client} (the limit "
                                      f"is {self.max_per_client}); approve or deny them first")
            token = secrets.token_hex(16)  # hex: typeable, and never starts with "-"
            new = PendingRequest(token, app.strip(), user, now, now, RequestState.PENDING,
                                 client=client)
            self._write(attrs.evolve(state, requests=(*state.requests, new)))
        return token

    def poll(self, token: str) -> tuple[PollResult, str | None]:
        """The request's state; GRANTED carries the key, and GRANTED or DENIED end the request.

        A PENDING poll writes nothing unless the stored poll time is older than a quarter of
        the timeout; unknown tokens never take the lock.
        """
        now = self.clock()
        req = self._find_live(self._read(), token, now)
        if req is None:
            return PollResult.UNKNOWN, None
        if req.state is RequestState.PENDING:
            self._polled[req.token] = now
            if now - req.polled <= self.request_timeout / 4:
                return PollResult.PENDING, None
        with self._update() as state:   # this poll's time is merged into what it writes
            req = self._find_live(state, token, now)
            if req is None:
                return PollResult.UNKNOWN, None
            if req.state is RequestState.PENDING:
                self._write(state)
                return PollResult.PENDING, None
            self._write(_replace_request(state, req, None))
        if req.state is RequestState.GRANTED:
            return PollResult.GRANTED, req.key
        return PollResult.DENIED, None

    def pending(self) -> list[PendingRequest]:
        """Requests waiting for a person to decide, oldest first."""
        live = self._live(self._read(), self.clock())
        return sorted((r for r in live.requests if r.state is RequestState.PENDING),
                      key=lambda r: r.created)

    def approve(self, token: str, printer: str | None = None) -> AppKey:
        """Grant the pending request `token` (or a unique prefix of it) a new app key, limited
        to `printer` when one is named (None: every printer of the service).

        Raises:
            KeyStoreError: no pending request matches, or the prefix is ambiguous or too short.
        """
        with self._update() as state:
            req = _find_pending(state, token)
            app_key = AppKey(req.app, secrets.token_urlsafe(32), self.clock(), printer)
            granted = attrs.evolve(req, state=RequestState.GRANTED, key=app_key.key)
            state = _replace_request(state, req, granted)
            self._write(attrs.evolve(state, keys=(*state.keys, app_key)))
        return app_key

    def deny(self, token: str) -> None:
        """Deny the pending request `token` (or a unique prefix of it); KeyStoreError if none."""
        with self._update() as state:
            req = _find_pending(state, token)
            self._write(_replace_request(state, req, attrs.evolve(req, state=RequestState.DENIED)))

    def keys(self) -> list[AppKey]:
        return list(self._read().keys)

    def revoke(self, app_or_key_prefix: str) -> list[AppKey]:
        """Remove every key of the app of that name, or else the one key starting with the prefix.

        Raises:
            KeyStoreError: nothing matches, or a key prefix is ambiguous or under 4 characters.
        """
        with self._update() as state:
            gone = [k for k in state.keys if k.app == app_or_key_prefix]
            if not gone and len(app_or_key_prefix) >= MIN_KEY_PREFIX:
                gone = [k for k in state.keys if k.key.startswith(app_or_key_prefix)]
                if len(gone) > 1:
                    raise KeyStoreError(f"{redact(app_or_key_prefix)} matches {len(gone)} keys; "
                                        "give more of the key or the app name")
            if not gone:
                raise KeyStoreError(f"no application key for {app_or_key_prefix!r}")
            self._write(attrs.evolve(state, keys=tuple(k for k in state.keys if k not in gone)))
        return gone

    def _read(self, *, fresh: bool = False) -> _State:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._cache = None
            return _State()
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        # the cache is trusted only if the file was already old when read: a write within the
        # same timestamp tick could otherwise keep its size, mtime and (reused) inode
        if (not fresh and self._cache is not None and self._cache[0] == stamp
                and self._cache[1] - st.st_mtime_ns / 1e9 > 1.0):
            return self._cache[2]
        read_at = time.time()
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyStoreError(f"cannot read the key store: {exc}", path=self.path) from exc
        state = _parse(text, self.path)
        self._cache = (stamp, read_at, state)
        return state

    @contextlib.contextmanager
    def _update(self) -> Iterator[_State]:
        """Hold the lock and yield the current state with expired requests already dropped."""
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        lock = os.path.join(self.folder, LOCK_NAME)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _owned_like_folder(fd, self.folder)
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self._live(self._read(fresh=True), self.clock())
        finally:
            os.close(fd)    # releases the lock

    def _live(self, state: _State, now: float) -> _State:
        """`state` with this process's poll times merged in and expired requests dropped."""
        polled = self._polled
        requests = tuple(
            r if polled.get(r.token, 0.0) <= r.polled else attrs.evolve(r, polled=polled[r.token])
            for r in state.requests)
        alive = tuple(r for r in requests if now - r.polled <= self.request_timeout)
        tokens = {r.token for r in alive}
        for token in [t for t in polled if t not in tokens]:
            del polled[token]
        return attrs.evolve(state, requests=alive)

    def _find_live(self, state: _State, token: str, now: float) -> PendingRequest | None:
        """The request `token` (the whole token) as stored, if it has not expired."""
        req = next((r for r in state.requests if _same(token, r.token)), None)
        last = 0.0 if req is None else max(req.polled, self._polled.get(req.token, 0.0))
        return req if now - last <= self.request_timeout else None

    def _write(self, state: _State) -> None:
        text = json.dumps(_dump(state), indent=2, ensure_ascii=False) + "\n"
        write_atomically(self.path, text.encode("utf-8"), prefix=".keys-")
        fd = os.open(self.path, os.O_RDONLY)
        try:
            _owned_like_folder(fd, self.folder)
        finally:
            os.close(fd)


def _owned_like_folder(fd: int, folder: str) -> None:
    """Run as root (`sudo printpipe keys approve ...`) on the service's state folder, give a
    file the folder's owner, so the service (its own user) can still read and write it."""
    if os.geteuid() != 0:
        return
    st = os.stat(folder)
    if st.st_uid != 0 or st.st_gid != 0:
        os.fchown(fd, st.st_uid, st.st_gid)


def _same(given: str, secret: str) -> bool:
    """Constant-time equality; any text may come in from the network (non-ASCII too)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), secret.encode())


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise KeyStoreError(f"the {what} is empty")
    if len(name) > MAX_APP_NAME or not name.isprintable():
        raise KeyStoreError(f"the {what} must be printable and at most {MAX_APP_NAME} characters")


def _replace_request(state: _State, old: PendingRequest, new: PendingRequest | None) -> _State:
    requests = (new if r is old else r for r in state.requests)
    return attrs.evolve(state, requests=tuple(r for r in requests if r is not None))


def _find_pending(state: _State, token: str) -> PendingRequest:
    if len(token) < MIN_TOKEN_PREFIX:
        raise KeyStoreError(f"give at least {MIN_TOKEN_PREFIX} characters of the request token")
    matches = [r for r in state.requests if r.token.startswith(token)]
    if not matches:
        raise KeyStoreError(f"no key request {token!r} (expired, or never made)")
    if len(matches) > 1:
        raise KeyStoreError(f"{token!r} matches {len(matches)} key requests; give more of it")
    if matches[0].state is not RequestState.PENDING:
        raise KeyStoreError(f"key request {token!r} was already {matches[0].state.value}")
    return matches[0]


def _dump(state: _State) -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "master": state.master,
            "keys": [attrs.asdict(k) for k in state.keys],
            "requests": [{**attrs.asdict(r), "state": r.state.value} for r in state.requests]}


_NUMBER = (int, float)
_KEY_FIELDS = {"app": str, "key": str, "created": _NUMBER, "printer": (str, type(None))}
_REQUEST_FIELDS = {"token": str, "app": str, "user": (str, type(None)), "created": _NUMBER,
                   "polled": _NUMBER, "state": str, "key": (str, type(None)),
                   "client": (str, type(None))}


def _client_optional(item: Any) -> Any:
    """Requests stored before the client address was recorded have none."""
    return {"client": None, **item} if isinstance(item, dict) else item


def _printer_optional(item: Any) -> Any:
    """Keys stored before a key could be limited to a printer are every printer's."""
    return {"printer": None, **item} if isinstance(item, dict) else item


def _checked(item: Any, types: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(item, dict) or set(item) != set(types):
        raise ValueError(f"{where} must be an object with exactly {', '.join(types)}")
    wrong = [n for n, kind in types.items()
             if not isinstance(item[n], kind) or isinstance(item[n], bool)]
    if wrong:
        raise ValueError(f"{where}: wrong type for {wrong[0]!r}")
    return item


def _parse(text: str, path: str) -> _State:
    """keys.json into a _State; KeyStoreError naming the file for anything unexpected."""
    try:
        data = _checked(json.loads(text), {"version": int, "master": (str, type(None)),
                                           "keys": list, "requests": list}, "the top level")
        if data["version"] != FORMAT_VERSION:
            raise ValueError(f"unknown format version {data['version']}")
        keys = tuple(AppKey(**_checked(_printer_optional(k), _KEY_FIELDS, f"keys[{i}]"))
                     for i, k in enumerate(data["keys"]))
        requests = tuple(
            PendingRequest(**{**_checked(_client_optional(r), _REQUEST_FIELDS, f"requests[{i}]"),
                              "state": RequestState(r["state"])})
            for i, r in enumerate(data["requests"]))
    except ValueError as exc:   # json.JSONDecodeError is one
        raise KeyStoreError(f"corrupt key store ({exc}); it holds the API keys, so fix it by "
                            "hand or move it away to start over", path=path) from exc
    return _State(data["master"] or None, keys, requests)
