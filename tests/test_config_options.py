"""One declaration per option: each config option is a field of its spec class (default and
YAML reading together, pipeline/config/options.py), the key tables are derived from those
fields, the declared default is a value its own reading gives back, and no class outside
`pipeline.config` declares the options again (as the virtual printer's FaultSpec and the
engine's EngineSettings did): the engine and the virtual printer take the spec values.
"""

from __future__ import annotations

import enum
import importlib
import json
import pkgutil
from collections.abc import Mapping

import attrs
import pytest

import pipeline
import stages
from pipeline.config.mqtt import MqttSpec
from pipeline.config.options import Field, Section, integer, options
from pipeline.config.printers import CAMERA
from pipeline.config.reader import HostConfig, default_config, load_config
from pipeline.config.schema import SECTIONS
from pipeline.config.sections import (
    HTTP,
    MQTT,
    STORAGE,
    EventsSpec,
    SubscriptionSpec,
    SubscriptionType,
)
from stages import BUILTIN_STAGES, stage_phases, stage_schemas

KEYED = {**SECTIONS, "http": HTTP, "storage": STORAGE, "mqtt": MQTT, **CAMERA}


def _tables(section: Section):
    yield section
    for entry in section.fields.values():
        if isinstance(entry, Section):
            yield from _tables(entry)


ALL_TABLES = [t for top in KEYED.values() for t in _tables(top)]
#: Every spec class that declares config options, with the names of those options.
DECLARING = {t.spec: set(t.fields) for t in ALL_TABLES} | {
    EventsSpec: set(options(EventsSpec)), SubscriptionSpec: set(options(SubscriptionSpec))}


@pytest.mark.parametrize("table", ALL_TABLES, ids=lambda t: t.spec.__name__)
def test_each_key_table_is_derived_from_its_spec_class(table):
    assert list(table.fields) == [f.name for f in attrs.fields(table.spec)]
    assert Section.of(table.spec) == table


def test_a_spec_field_declared_without_its_reading_is_refused():
    @attrs.frozen
    class Half:
        declared: int = integer(1)
        plain: int = 2

    with pytest.raises(TypeError, match=r"Half\.plain is not declared with option\(\)"):
        Section.of(Half)


# --- the declared default is what its own reading gives back ---------------------------------

def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _spelled_out(fields: Mapping[str, Field | Section], defaults, indent: str) -> list[str]:
    """YAML lines setting every option to its declared default; a None or an empty map is
    left out (it is what an absent key means, and not every option can spell it)."""
    lines = []
    for key, entry in fields.items():
        value = getattr(defaults, key)
        if isinstance(entry, Section):
            lines += [f"{indent}{key}:", *_spelled_out(entry.fields, value, indent + "  ")]
        elif isinstance(value, tuple):
            lines += [f"{indent}{key}:", *(f"{indent}  - {_scalar(v)}" for v in value)]
        elif isinstance(value, Mapping):
            if value:
                lines += [f"{indent}{key}:",
                          *(f"{indent}  {k}: {_scalar(v)}" for k, v in value.items())]
        elif value is not None:
            lines.append(f"{indent}{key}: {_scalar(value)}")
    return lines


def test_a_document_spelling_out_every_default_loads_as_the_defaults():
    lines = []
    for name, table in KEYED.items():
        lines += [f"{name}:", *_spelled_out(table.fields, table.spec(), "  ")]
    sub = SubscriptionSpec(("PrintDone",), ("true",), SubscriptionType.SYSTEM, location=None)
    lines += ["events:", *_spelled_out(options(EventsSpec), EventsSpec(), "  "),
              "  subscriptions:", "    - event: PrintDone", "      command: \"true\"",
              "      type: system", *_spelled_out(options(SubscriptionSpec), sub, "      ")]
    text = "\n".join(lines) + "\n"
    config = load_config(text, "all.yaml", stage_schemas=stage_schemas(),
                         stage_phases=stage_phases())

    (loaded,) = config.events.subscriptions
    assert loaded == attrs.evolve(sub, location=loaded.location)
    defaults = default_config(stage_schemas())
    assert config == attrs.evolve(defaults, path="all.yaml",
                                  events=attrs.evolve(defaults.events, subscriptions=(loaded,)),
                                  mqtt=MqttSpec(), mqtt_base="octoPrint/")  # the bridge is on


# --- nothing declares an option a second time ------------------------------------------------

def _modules():
    for package in (pipeline, stages):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith("__main__") and not info.name.startswith("pipeline.config"):
                yield importlib.import_module(info.name)


def _attrs_classes_outside_config() -> set[type]:
    return {value for module in _modules() for value in vars(module).values()
            if isinstance(value, type) and attrs.has(value)
            and value.__module__ == module.__name__}


#: A class outside config with this many of one spec's option names re-declares that spec
#: (whatever its defaults: a copy whose defaults differ has drifted, which is worse).
SHARED_LIMIT = 3



def redeclarations(classes) -> set[str]:
    found = set()
    for cls in classes:
        names = {f.name for f in attrs.fields(cls)}
        for spec, declared in DECLARING.items():
            shared = names & declared
            if len(shared) >= SHARED_LIMIT:
                found.add(f"{cls.__module__}.{cls.__qualname__} re-declares "
                          f"{spec.__name__}: {sorted(shared)}")
    return found


def test_no_class_outside_config_declares_config_options_again():
    assert redeclarations(_attrs_classes_outside_config()) == set()


def test_the_redeclaration_check_bites():
    @attrs.frozen
    class Knobs:  # the shape EngineSettings had: options again, some renamed, one drifted
        window: int = 1
        checksum: str = "print"
        busy_protocol: bool = True
        firmware_detection: bool = False
        send_m112_on_error: bool = True

    (found,) = redeclarations([Knobs])
    assert found.endswith("Knobs re-declares SerialSpec: ['busy_protocol', 'checksum', "
                          "'firmware_detection', 'send_m112_on_error']")


def test_the_engine_and_the_virtual_printer_take_the_configured_values():
    from pipeline.hooks.registry import build_pipeline
    from pipeline.session.core import HostCore
    from pipeline.virtual.spec import FirmwareSpec

    config = load_config("serial:\n  send_window: 3\nvirtual:\n  faults:\n    seed: 7\n",
                         stage_schemas=stage_schemas())
    core = HostCore(config, build_pipeline(config.pipeline, BUILTIN_STAGES), clock=lambda: 0.0)
    assert core.engine.serial is config.serial and core.engine.credit == 3
    assert core.engine.profile is config.printer.profile
    spec = FirmwareSpec.configured(config)
    assert spec.virtual is config.virtual and spec.profile is config.printer.profile


def test_every_section_of_host_config_is_keyed_or_read_by_hand():
    by_hand = {"path", "pipeline", "events", "name", "http_port", "mqtt_base"}  # printers.py
    assert {f.name for f in attrs.fields(HostConfig)} == set(KEYED) | by_hand
