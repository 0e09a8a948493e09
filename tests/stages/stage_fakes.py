"""Helpers for the built-in stage tests: a recording comm_instance, a G-code call shortcut and a
config-error probe. Not a test module."""

from __future__ import annotations

import logging
import textwrap

import pytest
from conftest import load_yaml

from pipeline.errors import ConfigError, ConfigErrors
from pipeline.gcode import parse_gcode


class FakeComm:
    """The parts of pipeline.facade.CommFacade the stages use, recording what they do."""

    def __init__(self, printing: bool = False) -> None:
        self.printing = printing
        self.events: list[tuple[str, dict]] = []
        self.printing_asked = 0
        self.logger = logging.getLogger("printpipe.handlers")

    def fire_event(self, name, payload=None):
        self.events.append((str(name), dict(payload or {})))

    def isPrinting(self):  # noqa: N802 (OctoPrint's name)
        self.printing_asked += 1
        return self.printing


class UntouchableComm:
    """A comm_instance for hot-path tests: any attribute access fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the stage touched comm_instance.{name} on its hot path")


def call(handler, cmd, comm=None, *, phase="queuing", tags=frozenset(), cmd_type=None):
    """Call a gcode-phase handler the way the chain does (keyword subcode and tags)."""
    gcode, subcode = parse_gcode(cmd)
    return handler(comm, phase, cmd, cmd_type, gcode, subcode=subcode, tags=tags)


def load(text: str):
    return load_yaml(textwrap.dedent(text), "s.yaml")


def config_error(text: str) -> ConfigError:
    """The single ConfigError that loading `text` raises."""
    with pytest.raises(ConfigErrors) as info:
        load(text)
    (error,) = info.value.errors
    assert error.path == "s.yaml", str(error)
    return error


def assert_option_error(text: str, line: int, fragment: str, key_end: str) -> None:
    """Loading `text` fails with one error at `line`, saying `fragment`, about `key_end`."""
    error = config_error(text)
    assert error.line == line, str(error)
    assert fragment in error.message, str(error)
    assert error.key.endswith(key_end), error.key
