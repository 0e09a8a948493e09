"""Tests for the API key store (pipeline/appkeys.py) and `printpipe keys` (pipeline/cli_keys.py):
the master key, identify, the request -> approve -> poll flow across two processes' stores,
expiry, revoke, a corrupt keys.json, redaction, and the CLI's output and exit codes."""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import stat
import subprocess
import sys

import pytest

from pipeline.app.cli.keys import KeysAction, add_keys_parser, run_keys
from pipeline.app.keys import (
    AppKey,
    KeyRequestLimit,
    KeyStore,
    KeyStoreError,
    PollResult,
    RequestState,
    redact,
)
from pipeline.errors import HostError

ROOT = pathlib.Path(__file__).resolve().parent.parent


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def folder(tmp_path: pathlib.Path) -> str:
    return str(tmp_path / "state")     # does not exist yet: the store creates it


def keys_file(folder: str) -> pathlib.Path:
    return pathlib.Path(folder) / "keys.json"


def write_store(folder: str, *, keys=(), requests=(), master=None) -> None:
    """A hand-written keys.json, for prefixes that random keys and tokens would never share."""
    os.makedirs(folder, exist_ok=True)
    data = {"version": 1, "master": master, "keys": list(keys), "requests": list(requests)}
    keys_file(folder).write_text(json.dumps(data), encoding="utf-8")


def a_request(token: str, app: str = "Slicer", state: str = "pending", polled: float = 1000.0):
    return {"token": token, "app": app, "user": None, "created": 1000.0, "polled": polled,
            "state": state, "key": None}


def run(action: str, arg: str | None, folder: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_keys(action, arg, folder, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


# --- the master key -----------------------------------------------------------------------------

def test_master_key_is_generated_once_stored_0600_and_kept(folder):
    key, created = KeyStore(folder).ensure_master()
    assert created
    assert len(key) == 43
    assert os.stat(keys_file(folder)).st_mode & 0o777 == 0o600
    assert os.stat(folder).st_mode & 0o777 == 0o700
    assert KeyStore(folder).ensure_master() == (key, False)     # a restart keeps it
    assert key in keys_file(folder).read_text()


def test_configured_key_wins_and_is_not_written(folder):
    KeyStore(folder).ensure_master()
    stored = keys_file(folder).read_text()
    store = KeyStore(folder, configured_key="configured-secret-key")
    assert store.ensure_master() == ("configured-secret-key", False)
    assert store.identify("configured-secret-key") == "master"
    assert store.identify(json.loads(stored)["master"]) is None     # replaced, not added
    assert keys_file(folder).read_text() == stored
    assert "configured-secret-key" not in repr(store)


def test_configured_key_on_a_fresh_folder_creates_nothing(folder):
    store = KeyStore(folder, configured_key="configured-secret-key")
    assert store.ensure_master() == ("configured-secret-key", False)
    assert not os.path.exists(folder)


def test_identify(folder):
    store = KeyStore(folder)
    master, _ = store.ensure_master()
    token = store.request("OrcaSlicer")
    app_key = store.approve(token)
    cases = [(master, "master"), (app_key.key, "OrcaSlicer"), ("wrong", None), ("", None),
             (master[:-1], None), (master + "x", None), (app_key.key.upper(), None),
             ("schlüssel€", None)]
    assert [(k, store.identify(k)) for k, _ in cases] == cases


# --- the request flow ---------------------------------------------------------------------------

def test_request_pending_approve_poll_granted_then_the_key_identifies_the_app(folder):
    store = KeyStore(folder)
    token = store.request("Home Assistant", user="admin")
    [req] = store.pending()
    assert (req.token, req.app, req.user, req.state) == (token, "Home Assistant", "admin",
                                                         RequestState.PENDING)
    assert store.poll(token) == (PollResult.PENDING, None)
    app_key = store.approve(token[:6])          # people type a prefix
    assert app_key.app == "Home Assistant"
    assert store.pending() == []
    assert store.poll(token) == (PollResult.GRANTED, app_key.key)
    assert store.identify(app_key.key) == "Home Assistant"
    assert store.keys() == [app_key]
    assert store.poll(token) == (PollResult.UNKNOWN, None)      # collected once, then gone


def test_deny_then_poll_says_denied_once(folder):
    store = KeyStore(folder)
    token = store.request("Cura")
    assert store.deny(token) is None
    assert store.pending() == []
    assert store.poll(token) == (PollResult.DENIED, None)
    assert store.poll(token) == (PollResult.UNKNOWN, None)
    assert store.keys() == []


def test_requests_not_polled_for_the_timeout_expire(folder):
    clock = FakeClock()
    store = KeyStore(folder, clock=clock, request_timeout=60.0)
    token = store.request("PrusaSlicer")
    for _ in range(3):          # polling keeps it alive well past the timeout
        clock.now += 59
        assert store.poll(token) == (PollResult.PENDING, None)
    assert [r.polled for r in store.pending()] == [clock.now]
    clock.now += 61
    assert store.pending() == []
    assert store.poll(token) == (PollResult.UNKNOWN, None)
    with pytest.raises(KeyStoreError, match="no key request"):
        store.approve(token)


def test_a_granted_request_the_app_never_collects_expires_but_the_key_stays(folder):
    clock = FakeClock()
    store = KeyStore(folder, clock=clock)
    token = store.request("Octoapp")
    app_key = store.approve(token)
    clock.now += 61
    assert store.poll(token) == (PollResult.UNKNOWN, None)
    assert store.keys() == [app_key]            # revocable with `printpipe keys revoke`


def test_a_second_store_on_the_folder_sees_the_first_ones_changes(folder):
    host, cli = KeyStore(folder), KeyStore(folder)   # the running host and `printpipe keys`
    master, _ = host.ensure_master()
    assert cli.ensure_master() == (master, False)
    token = host.request("Home Assistant")
    assert host.keys() == []                    # the host has now read (and cached) the file
    assert host.poll(token) == (PollResult.PENDING, None)
    assert [r.token for r in cli.pending()] == [token]
    app_key = cli.approve(token)
    assert host.keys() == [app_key]
    assert host.poll(token) == (PollResult.GRANTED, app_key.key)
    assert host.identify(app_key.key) == "Home Assistant"
    assert cli.revoke("Home Assistant") == [app_key]
    assert host.identify(app_key.key) is None


def test_a_poll_does_not_undo_an_approval_made_in_between(folder):
    host, cli = KeyStore(folder), KeyStore(folder)
    token = host.request("Home Assistant")
    host.pending()                              # the host holds the pending state in its cache
    cli.approve(token)
    result, key = host.poll(token)              # the poll's write must not restore "pending"
    assert result is PollResult.GRANTED and key is not None


APPROVER = """
import sys
from pipeline.app.keys import KeyStore
store = KeyStore(sys.argv[1])
for request in store.pending():
    store.approve(request.token)
"""


def test_approvals_from_another_process_survive_concurrent_polls(folder):
    host = KeyStore(folder)
    tokens = [host.request(f"app{i}") for i in range(10)]
    approver = subprocess.Popen([sys.executable, "-c", APPROVER, folder], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    granted: dict[str, str | None] = {}
    finished = False
    while not finished:         # poll as hard as the host would while the approvals land
        finished = approver.poll() is not None
        for token in set(tokens) - set(granted):
            result, key = host.poll(token)
            if result is PollResult.GRANTED:
                granted[token] = key
    assert approver.returncode == 0
    assert sorted(granted) == sorted(tokens)    # without the lock some approvals get lost
    apps = sorted(host.identify(str(k)) or "" for k in granted.values())
    assert apps == sorted(f"app{i}" for i in range(10))


@pytest.mark.parametrize(("token", "message"), [
    ("abc12", "at least 6"),                    # too short to be a prefix
    ("ffffff", "no key request"),
    ("abcdef", "matches 2"),
    ("abcde9", "already granted"),
])
def test_approve_and_deny_refuse_bad_tokens(folder, token, message):
    granted = {**a_request("abcde9zzzz"), "state": "granted", "key": "k" * 43}
    write_store(folder, requests=[a_request("abcdef0123"), a_request("abcdef9876"), granted])
    store = KeyStore(folder, clock=FakeClock())
    for act in (store.approve, store.deny):
        with pytest.raises(KeyStoreError, match=message):
            act(token)
    assert [r.token for r in store.pending()] == ["abcdef0123", "abcdef9876"]


@pytest.mark.parametrize(("app", "user"), [("", None), ("   ", None), ("Bad\x1b[2Japp", None),
                                           ("x" * 101, None), ("Slicer", "bad\nuser")])
def test_request_refuses_empty_or_unprintable_names(folder, app, user):
    with pytest.raises(KeyStoreError):
        KeyStore(folder).request(app, user)
    assert KeyStore(folder).pending() == []


def test_request_refuses_past_the_pending_limit(folder):
    store = KeyStore(folder, max_pending=3)
    tokens = [store.request(f"app{i}") for i in range(3)]
    with pytest.raises(KeyStoreError, match="too many"):
        store.request("one more")
    assert [r.token for r in store.pending()] == tokens


def test_one_client_address_holds_at_most_max_per_client_pending_requests(folder):
    store = KeyStore(folder, max_per_client=2, max_pending=5)
    mine = [store.request(f"app{i}", client="192.168.1.9") for i in range(2)]
    with pytest.raises(KeyRequestLimit, match=r"from 192\.168\.1\.9"):
        store.request("one more", client="192.168.1.9")
    theirs = [store.request(f"other{i}", client=f"192.168.1.{i}") for i in range(3)]
    with pytest.raises(KeyRequestLimit, match=r"too many pending key requests \(5\)"):
        store.request("past the global cap", client="10.0.0.1")    # the global cap stays
    assert [(r.token, r.client) for r in store.pending()] == (
        [(t, "192.168.1.9") for t in mine] + [(t, f"192.168.1.{i}") for i, t in enumerate(theirs)])
    store.deny(theirs[0])
    store.approve(mine[0])                      # a decided request no longer counts
    store.request("now there is room", client="192.168.1.9")


def test_requests_without_a_client_address_have_only_the_global_cap(folder):
    store = KeyStore(folder, max_per_client=1, max_pending=3)
    for i in range(3):
        store.request(f"app{i}")                 # the CLI and tests give no address
    assert [r.client for r in store.pending()] == [None, None, None]


def stamp(path: pathlib.Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns, st.st_size


def test_polling_does_not_rewrite_the_file(folder):
    clock = FakeClock()
    store = KeyStore(folder, clock=clock, request_timeout=60.0)
    token = store.request("Home Assistant", client="192.168.1.9")
    before = stamp(keys_file(folder))
    for _ in range(15):                          # a poll a second, for 15 s
        clock.now += 1
        assert store.poll(token) == (PollResult.PENDING, None)
        assert store.poll("0" * 32) == (PollResult.UNKNOWN, None)
    assert stamp(keys_file(folder)) == before
    assert [r.polled for r in store.pending()] == [clock.now]   # kept in memory


def test_a_stale_poll_time_is_stored_so_printpipe_keys_sees_the_request_alive(folder):
    clock = FakeClock()
    host = KeyStore(folder, clock=clock, request_timeout=60.0)
    token = host.request("Home Assistant")
    for _ in range(40):                          # a poll every 2 s for 80 s
        clock.now += 2
        host.poll(token)
    cli = KeyStore(folder, clock=clock, request_timeout=60.0)
    [seen] = cli.pending()                       # not expired for the other process
    assert clock.now - seen.polled <= 60 / 4
    assert cli.approve(token).app == "Home Assistant"
    assert host.poll(token)[0] is PollResult.GRANTED


def test_a_request_stored_without_a_client_address_reads_as_none(folder):
    write_store(folder, requests=[a_request("abcdef0123")])     # the format before addresses
    store = KeyStore(folder, clock=FakeClock())
    assert [r.client for r in store.pending()] == [None]
    store.request("Cura", client="::1")
    assert json.loads(keys_file(folder).read_text())["requests"][1]["client"] == "::1"


# --- revoke -------------------------------------------------------------------------------------

KEYS = [{"app": "Cura", "key": "abcd1111" + "x" * 35, "created": 1.0},
        {"app": "Cura", "key": "abcd2222" + "y" * 35, "created": 2.0},
        {"app": "Home Assistant", "key": "wxyz3333" + "z" * 35, "created": 3.0}]


@pytest.mark.parametrize(("what", "revoked"), [
    ("Cura", ["abcd1111", "abcd2222"]),          # every key of the app
    ("Home Assistant", ["wxyz3333"]),
    ("abcd2", ["abcd2222"]),                     # a unique key prefix
    (KEYS[2]["key"], ["wxyz3333"]),              # the whole key
])
def test_revoke(folder, what, revoked):
    write_store(folder, keys=KEYS)
    store = KeyStore(folder)
    assert [k.key[:8] for k in store.revoke(what)] == revoked
    kept = store.keys()  # a KeyStore method (a list of AppKeys), not a dict's keys view
    assert sorted(k["key"][:8] for k in KEYS) == sorted(revoked + [k.key[:8] for k in kept])


@pytest.mark.parametrize(("what", "message"), [("OctoApp", "no application key"),
                                               ("abc", "no application key"),  # under 4 chars
                                               ("abcd", "matches 2 keys"),
                                               ("cura", "no application key")])
def test_revoke_refuses_when_nothing_or_several_match(folder, what, message):
    write_store(folder, keys=KEYS)
    with pytest.raises(KeyStoreError, match=message) as info:
        KeyStore(folder).revoke(what)
    assert "abcd1111" not in str(info.value)
    assert len(KeyStore(folder).keys()) == 3


# --- the file -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "{not json",
    "",
    "[]",
    '{"version": 2, "master": null, "keys": [], "requests": []}',
    '{"version": 1, "master": null, "keys": {}, "requests": []}',
    '{"version": 1, "master": 5, "keys": [], "requests": []}',
    '{"version": 1, "master": null, "keys": [{"app": "Cura", "created": 1}], "requests": []}',
    ('{"version": 1, "master": null, "keys": [], "requests": [{"token": "t", "app": "a", '
     '"user": null, "created": 1, "polled": 1, "state": "maybe", "key": null}]}'),
])
def test_a_corrupt_keys_file_is_an_error_naming_it_and_is_never_reset(folder, text):
    os.makedirs(folder)
    keys_file(folder).write_text(text, encoding="utf-8")
    store = KeyStore(folder)
    for call in (store.ensure_master, store.keys, lambda: store.request("Cura"),
                 lambda: store.identify("x")):
        with pytest.raises(KeyStoreError, match="corrupt key store") as info:
            call()
        assert str(keys_file(folder)) in str(info.value)
        assert isinstance(info.value, HostError)
    assert keys_file(folder).read_text(encoding="utf-8") == text


def test_writes_are_atomic_0600_and_leave_no_temp_files(folder):
    store = KeyStore(folder)
    store.ensure_master()
    store.approve(store.request("Cura"))
    store.deny(store.request("Slicer"))
    os.chmod(keys_file(folder), 0o644)          # someone loosened it; the next write fixes it
    store.revoke("Cura")
    assert sorted(os.listdir(folder)) == ["keys.json", "keys.lock"]
    assert os.stat(keys_file(folder)).st_mode & 0o777 == 0o600
    assert os.stat(pathlib.Path(folder) / "keys.lock").st_mode & 0o777 == 0o600


def test_a_missing_folder_reads_as_empty_and_is_not_created_by_reads(folder):
    store = KeyStore(folder)
    assert (store.keys(), store.pending(), store.identify("x")) == ([], [], None)
    assert store.poll("0" * 32) == (PollResult.UNKNOWN, None)
    assert not keys_file(folder).exists()


@pytest.mark.parametrize(("key", "shown"), [
    ("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "abcd…"),
    ("abcdefghijklmnop", "abcd…"),
    ("abcdefgh", "ab…"),
    ("abc", "…"),
    ("", "…"),
])
def test_redact(key, shown):
    assert redact(key) == shown


def test_reprs_never_hold_a_whole_key(folder):
    store = KeyStore(folder)
    app_key = store.approve(store.request("Cura"))
    assert app_key.key not in repr(app_key)
    assert redact(app_key.key) in repr(app_key)
    assert app_key == AppKey("Cura", app_key.key, app_key.created)


# --- printpipe keys -----------------------------------------------------------------------------

def test_cli_list_shows_tokens_and_redacted_keys_never_whole_keys(folder):
    store = KeyStore(folder)
    master, _ = store.ensure_master()
    waiting = store.request("Home Assistant", user="admin")
    granted = store.approve(store.request("OrcaSlicer"))
    code, out, err = run("list", None, folder)
    assert (code, err) == (0, "")
    assert waiting in out and "'Home Assistant'" in out and "admin" in out
    assert "'OrcaSlicer'" in out and redact(granted.key) in out
    assert granted.key not in out and master not in out


def test_cli_list_on_an_empty_folder_names_the_key_store(folder):
    assert run("list", None, folder) == (
        0, f"no pending requests\nno application keys\n(key store: {keys_file(folder)})\n", "")


def test_cli_show_prints_the_service_key_in_full_on_a_terminal(folder):
    code, out, err = run("show", None, folder)
    assert (code, out) == (1, "") and "no API key" in err
    master, _ = KeyStore(folder).ensure_master()
    code, out, err = run("show", None, folder)  # not a terminal (tests/test_check_secrets.py)
    assert (code, out) == (0, redact(master) + "\n") and "on a terminal only" in err

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    assert run_keys("show", None, folder, out, io.StringIO()) == 0
    assert out.getvalue() == master + "\n"
    assert run_keys("show", None, folder, io.StringIO(), io.StringIO(),
                    configured_key="k" * 20) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, as `sudo printpipe keys` has")
def test_keys_under_sudo_keep_the_service_user_owning_its_files(folder):
    os.makedirs(folder)
    os.chown(folder, 65534, 65534)            # the service's user (nobody here) owns its state
    token = KeyStore(folder).request("Cura")  # written as root, as `sudo printpipe keys` does
    assert run("approve", token, folder)[0] == 0
    for name in os.listdir(folder):
        st = os.stat(os.path.join(folder, name))
        assert (name, st.st_uid, st.st_gid) == (name, 65534, 65534)
    assert stat.S_IMODE(os.stat(keys_file(folder)).st_mode) == 0o600


def test_cli_approve_deny_and_revoke(folder):
    store = KeyStore(folder)
    yes, no = store.request("Cura"), store.request("Spammer")
    code, out, err = run("approve", yes[:8], folder)
    assert (code, err) == (0, "") and "approved 'Cura'" in out
    [app_key] = store.keys()
    assert app_key.key not in out
    assert run("deny", no, folder) == (0, f"denied request {no}\n", "")
    assert store.poll(yes) == (PollResult.GRANTED, app_key.key)
    assert store.poll(no) == (PollResult.DENIED, None)
    code, out, err = run("revoke", "Cura", folder)
    assert (code, err, store.keys()) == (0, "", []) and redact(app_key.key) in out


@pytest.mark.parametrize(("action", "arg", "message"), [
    ("approve", None, "approve needs TOKEN"),
    ("deny", "", "deny needs TOKEN"),
    ("revoke", None, "revoke needs APP"),
    ("list", "extra", "list takes no argument"),
    ("grant", "abcdef", "unknown action 'grant'"),
    ("approve", "abcdef", "no key request 'abcdef'"),
    ("approve", "abc", "at least 6"),
    ("revoke", "Nobody", "no application key for 'Nobody'"),
])
def test_cli_errors_exit_2_with_one_line_on_stderr(folder, action, arg, message):
    code, out, err = run(action, arg, folder)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("printpipe keys: ") and message in err


def test_cli_reports_a_corrupt_file_by_name(folder):
    os.makedirs(folder)
    keys_file(folder).write_text("{", encoding="utf-8")
    code, out, err = run("list", None, folder)
    assert (code, out) == (2, "") and str(keys_file(folder)) in err


@pytest.mark.parametrize(("argv", "expected"), [
    (["keys", "list"], ("list", None, None)),
    (["keys", "approve", "3f2a9c", "-c", "printer.yaml"], ("approve", "3f2a9c", "printer.yaml")),
    (["keys", "--config", "p.yaml", "revoke", "Home Assistant"],
     ("revoke", "Home Assistant", "p.yaml")),
])
def test_keys_parser(argv, expected):
    parser = argparse.ArgumentParser(prog="printpipe")
    add_keys_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    assert (args.command, (args.action, args.arg, args.config)) == ("keys", expected)
    assert {a.value for a in KeysAction} == {"list", "approve", "deny", "revoke", "show"}


def test_keys_parser_refuses_an_unknown_action(capsys):
    parser = argparse.ArgumentParser(prog="printpipe")
    add_keys_parser(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["keys", "grant"])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_cli_keys_without_c_use_the_installed_services_config(tmp_path, monkeypatch, capsys):
    from pipeline.app.cli import main as cli
    state = tmp_path / "var-lib-printpipe" / "state"
    installed = tmp_path / "printer.yaml"
    installed.write_text(f"storage:\n  state: {state}\n")
    monkeypatch.setattr(cli, "INSTALLED_CONFIG", str(installed))
    master, _ = KeyStore(str(state)).ensure_master()
    assert cli.main(["keys", "show"]) == 0
    assert capsys.readouterr().out == redact(master) + "\n"  # not a terminal
    assert cli.main(["keys", "list"]) == 0
    assert f"(key store: {state}/keys.json)" in capsys.readouterr().out
