"""The `events`, `http` and `storage` sections: subscriptions are checked at load (event names,
placeholders, types, system-only keys), and every problem names its line."""

from __future__ import annotations

import textwrap

import pytest
from conftest import load_yaml

from pipeline.config.sections import SubscriptionType
from pipeline.errors import ConfigErrors
from pipeline.fanout.subscriptions import check_custom_events


def errors_of(text: str):
    with pytest.raises(ConfigErrors) as info:
        load_yaml(textwrap.dedent(text))
    return info.value.errors


def test_a_full_subscription_list_loads():
    cfg = load_yaml(textwrap.dedent("""\
        events:
          enabled: true
          max_concurrent: 2
          shutdown_grace: 1.5
          subscriptions:
            - event: PrintDone
              command: notify-send "done {name}" {__filename}
              type: system
              name: notify
              timeout: 5
              cwd: /tmp
              env:
                LANG: C
            - event:
                - ZChange
                - Dwelling
              command:
                - M117 z {__currentZ}
                - M400
              type: gcode
              enabled: false
              debug: true
        """))
    first, second = cfg.events.subscriptions
    assert first.type is SubscriptionType.SYSTEM and first.events == ("PrintDone",)
    assert (first.name, first.timeout, first.cwd, dict(first.env)) == \
        ("notify", 5.0, "/tmp", {"LANG": "C"})
    assert first.location.line == 6
    assert second.events == ("ZChange", "Dwelling")
    assert second.commands == ("M117 z {__currentZ}", "M400")
    assert (second.enabled, second.debug, second.shell) == (False, True, False)
    assert (cfg.events.max_concurrent, cfg.events.shutdown_grace) == (2, 1.5)


ERRORS = {
    "unknown event": ("""\
        events:
          subscriptions:
            - event: PrintDon
              command: echo hi
              type: system
        """, 3, "unknown event 'PrintDon' (did you mean 'PrintDone'"),
    "unknown event in a list": ("""\
        events:
          subscriptions:
            - type: gcode
              command: M117 hi
              event:
                - PrintDone
                - Homing
        """, 5, "unknown event 'Homing'"),
    "unknown placeholder": ("""\
        events:
          subscriptions:
            - event: PrintDone
              type: system
              command: echo {nmae}
        """, 5, "unknown placeholder {nmae}"),
    "placeholder not in every listed event": ("""\
        events:
          subscriptions:
            - event:
                - ZChange
                - Home
              type: gcode
              command: M117 {new}
        """, 7, "unknown placeholder {new}"),
    "bad type": ("""\
        events:
          subscriptions:
            - event: PrintDone
              type: shell
              command: echo hi
        """, 4, "expected one of: gcode, system, found 'shell'"),
    "missing command": ("""\
        events:
          subscriptions:
            - event: PrintDone
              type: system
        """, 3, "command"),
    "system key on gcode": ("""\
        events:
          subscriptions:
            - event: PrintDone
              type: gcode
              command: M117 done
              timeout: 5
        """, 6, "timeout is only for system subscriptions"),
    "unbalanced quote": ("""\
        events:
          subscriptions:
            - event: PrintDone
              type: system
              command: echo 'oops
        """, 5, "No closing quotation"),
    "broken braces": ("""\
        events:
          subscriptions:
            - event: PrintDone
              type: gcode
              command: M117 {name
        """, 5, "command 'M117 {name'"),
    "negative timeout": ("""\
        events:
          subscriptions:
            - event: PrintDone
              type: system
              command: "true"
              timeout: -1
        """, 6, "timeout must be positive"),
    "unknown key": ("""\
        events:
          subscriptions:
            - event: PrintDone
              type: system
              command: "true"
              shel: true
        """, 6, "unknown key"),
    "bad http port": ("""\
        http:
          port: 70000
        """, 2, "port must be 0..65535"),
    "short api key": ("""\
        http:
          api_key: abc
        """, 2, "at least 16 characters"),
}


@pytest.mark.parametrize(("text", "line", "fragment"), ERRORS.values(), ids=ERRORS.keys())
def test_broken_subscriptions_are_config_errors_with_their_line(text, line, fragment):
    errors = errors_of(text)
    assert any(e.line == line and fragment in e.message for e in errors), \
        [str(e) for e in errors]
    assert all(e.path == "test.yaml" for e in errors)


def test_aliases_script_events_and_payload_keys_of_optional_fields_load():
    cfg = load_yaml(textwrap.dedent("""\
        events:
          subscriptions:
            - event:
                - Dwelling
                - GcodeScriptAfterPrintDoneFinished
              type: gcode
              command: M117 {__eventname}
            - event: PrintCancelled
              type: system
              command: echo {position[z]} {user}
        """))
    assert len(cfg.events.subscriptions) == 2


def test_custom_event_names_are_checked_against_registered_ones_at_start():
    cfg = load_yaml(textwrap.dedent("""\
        events:
          subscriptions:
            - event: plugin_mystage_ready
              type: system
              command: echo {anything}
        """))
    check_custom_events(cfg.events, ["plugin_mystage_ready"])  # registered: fine
    with pytest.raises(ConfigErrors) as info:
        check_custom_events(cfg.events, ["plugin_other_x"])
    err = info.value.errors[0]
    assert err.line == 3
    assert "plugin_mystage_ready" in err.message and "plugin_other_x" in err.message


def test_http_and_storage_defaults_and_values():
    cfg = load_yaml("")
    assert (cfg.http.host, cfg.http.port, cfg.http.api_key) == ("127.0.0.1", 5000, None)
    cfg = load_yaml(textwrap.dedent("""\
        http:
          host: 0.0.0.0
          port: 8080
          api_key: 0123456789abcdef0123
          body_limit: 1000
        storage:
          folder: files
          state: state
        """))
    assert (cfg.http.host, cfg.http.port, cfg.http.body_limit) == ("0.0.0.0", 8080, 1000)
    assert (cfg.storage.folder, cfg.storage.state) == ("files", "state")


def test_http_host_names_are_bare_names_compared_in_lower_case():
    assert load_yaml("").http.host_names == ()
    cfg = load_yaml("http:\n  host_names:\n    - PrintPipe.local.\n    - 192.168.1.20\n")
    assert cfg.http.host_names == ("printpipe.local", "192.168.1.20")
    with pytest.raises(ConfigErrors) as info:
        load_yaml("http:\n  host_names:\n    - printpipe.local\n    - printpipe.local:5000\n"
                  "    - http://printer\n")
    assert [(e.line, e.key) for e in info.value.errors] == [
        (4, "http.host_names[1]"), (5, "http.host_names[2]")]
    assert "no scheme, port or path" in info.value.errors[0].message
