"""`printpipe check` passes exactly the configs `serve` starts with (both ask
startup.config_problems); the API key is never printed in full but by `printpipe keys show`
on a terminal (a file, a pipe, a log or the journal get it redacted, with where to see it);
and the files that hold secrets or the printer's traffic are their owner's only (0600)."""

from __future__ import annotations

import io
import logging
import os
import pathlib
import stat

import pytest
from http_fixtures import serve_for_test

from pipeline.app.cli.check import run_check
from pipeline.app.cli.keys import run_keys
from pipeline.app.keys import KeyStore, redact
from pipeline.app.serve import serve
from pipeline.app.startup import announce_key
from pipeline.errors import ConfigErrors
from pipeline.link.trace import SerialTrace

#: Configs that load but that serve refuses, and the reason both give.
REFUSED = {
    "anonymous-on-the-network": (
        "http:\n  host: 0.0.0.0\n  port: 0\n  allow_anonymous: true\n",
        ("http.allow_anonymous needs a loopback host, not '0.0.0.0': anyone on the network "
        "could drive the printer")),
    "unregistered-custom-event": (
        ("events:\n  subscriptions:\n    - event: plugin_nobody_ready\n      type: gcode\n"
        "      command: M117 ready\n"),
        ("unknown event 'plugin_nobody_ready': no events.register_custom_events stage "
        "registers it")),
    "unusable-mqtt-tls-file": (
        "mqtt:\n  host: 127.0.0.1\n  port: 1\n  tls:\n    ca_file: missing-ca.crt\n",
        "cannot use the TLS files {folder}/missing-ca.crt: [Errno 2] No such file or directory"),
}


def write_config(tmp_path, extra: str) -> str:
    path = tmp_path / "printpipe.yaml"
    path.write_text(f"printer:\n  port: virtual\nstorage:\n  folder: {tmp_path}/files\n"
                    f"  state: {tmp_path}/state\n{extra}")
    return str(path)


@pytest.mark.parametrize("case", REFUSED)
async def test_check_refuses_what_serve_refuses_with_the_same_reason(tmp_path, case):
    from conftest import load_yaml
    extra, reason = REFUSED[case]
    reason = reason.format(folder=tmp_path)
    path = write_config(tmp_path, extra)
    err = io.StringIO()
    assert run_check(path, io.StringIO(), err) == 1
    checked = err.getvalue().splitlines()
    assert len(checked) == 2 and reason in checked[0] and checked[1] == "1 problem found"
    config = load_yaml(pathlib.Path(path).read_text(), path)
    with pytest.raises(ConfigErrors) as info:
        await serve(config, out=io.StringIO(), connect=False, handle_signals=False)
    assert [str(e) for e in info.value.errors] == [checked[0]]
    assert not os.path.exists(tmp_path / "state" / "keys.json")  # refused before anything


def test_check_passes_the_same_configs_done_right(tmp_path):
    path = write_config(tmp_path, "http:\n  host: 127.0.0.1\n  allow_anonymous: true\n")
    assert run_check(path, io.StringIO(), io.StringIO()) == 0


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


KEY = "Y9NL7CKZPW5ITFbs0pleXVu1sRngqdmBnrxlEm3HTRs"


@pytest.mark.parametrize("kind", [io.StringIO, Terminal], ids=["file", "terminal"])
@pytest.mark.parametrize("created", [True, False])
def test_serve_never_prints_the_key_in_full(kind, created):
    out = kind()
    announce_key(KEY, created, False, "/var/lib/printpipe/state/keys.json", out)
    assert KEY not in out.getvalue() and redact(KEY) in out.getvalue()
    if created:
        assert "sudo printpipe keys show" in out.getvalue()


def test_keys_show_prints_the_whole_key_on_a_terminal_only(tmp_path):
    folder = str(tmp_path / "state")
    master, _ = KeyStore(folder).ensure_master()
    out, err = Terminal(), io.StringIO()
    assert run_keys("show", None, folder, out, err) == 0
    assert (out.getvalue(), err.getvalue()) == (master + "\n", "")
    out, err = io.StringIO(), io.StringIO()
    assert run_keys("show", None, folder, out, err) == 0
    assert master not in out.getvalue() + err.getvalue()
    assert out.getvalue() == redact(master) + "\n"
    assert err.getvalue() == ("printpipe keys: the key is shown in full on a terminal only "
                              f"(it is in {folder}/keys.json, mode 0600)\n")
    out, err = io.StringIO(), io.StringIO()
    assert run_keys("show", None, folder, out, err, configured_key="k" * 24) == 0
    assert out.getvalue() == redact("k" * 24) + "\n" and "http.api_key" in err.getvalue()


async def test_a_generated_key_goes_to_no_output_file_and_no_log(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    async with serve_for_test(tmp_path, key=None) as srv:  # the key is generated at start
        first = srv.key
        assert first and first not in srv.out.getvalue()
        assert f"a new API key {redact(first)} was generated" in srv.out.getvalue()
        # a reload that removes http.api_key makes another one: logged redacted too
        with open(srv.config_path) as f:
            text = f.read()
        with open(srv.config_path, "w") as f:
            f.write(text.replace("  port: 0\n", "  port: 0\n  api_key: configured-key-123\n"))
        r = await srv.client.post("/api/system/reload")
        assert r.status_code == 200, r.text
        os.unlink(tmp_path / "state" / "keys.json")
        with open(srv.config_path, "w") as f:
            f.write(text)
        r = await srv.client.post("/api/system/reload",
                                  headers={"X-Api-Key": "configured-key-123"})
        assert r.status_code == 200, r.text
        second = KeyStore(str(tmp_path / "state")).master()
    assert second and second != first
    assert first not in caplog.text and second not in caplog.text
    assert f"a new API key {redact(second)} was generated" in caplog.text


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_serial_trace_is_its_owners_only_even_when_it_was_not(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "serial.log"
        path.write_text("from before\n")
        os.chmod(path, 0o644)
        trace = SerialTrace(str(path), max_bytes=4096)
        assert mode(path) == 0o600
        for n in range(200):
            trace.data("Send", b"M117 line %d\n" % n)
        trace.close()
    finally:
        os.umask(old)
    assert (tmp_path / "serial.log.1").exists()  # rolled over: the new file is private too
    assert mode(path) == 0o600 and mode(tmp_path / "serial.log.1") == 0o600


async def test_the_services_trace_journal_and_keys_are_private(tmp_path):
    from pipeline.files.journal import JournalFile
    old = os.umask(0o022)
    try:
        async with serve_for_test(tmp_path, "serial:\n  log: true\n", key=None):
            JournalFile(str(tmp_path / "state")).write({"file": "job.gcode"})
            modes = {name: mode(tmp_path / "state" / name)
                     for name in ("serial.log", "journal.json", "keys.json")}
    finally:
        os.umask(old)
    assert modes == {"serial.log": 0o600, "journal.json": 0o600, "keys.json": 0o600}
