"""One declaration per option: each config option is a field of its spec class (default and
YAML reading together, pipeline/config/options.py), the key tables are derived from those
fields, and the declared default is a value its own reading gives back.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping

import attrs
import pytest

from pipeline.config.options import Field, Section, integer, options
from pipeline.config.reader import HostConfig, default_config, load_config
from pipeline.config.schema import SECTIONS
from pipeline.config.sections import (
    HTTP, STORAGE, EventsSpec, SubscriptionSpec, SubscriptionType,
)
from stages import stage_phases, stage_schemas

KEYED = {**SECTIONS, "http": HTTP, "storage": STORAGE}


def _tables(section: Section):
    yield section
    for entry in section.fields.values():
        if isinstance(entry, Section):
            yield from _tables(entry)


ALL_TABLES = [t for top in KEYED.values() for t in _tables(top)]


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
            lines += [f"{indent}{key}:", *(f"{indent}  {k}: {_scalar(v)}"
                                           for k, v in value.items())] if value else []
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
                                  events=attrs.evolve(defaults.events, subscriptions=(loaded,)))


def test_host_config_is_the_sections():
    assert {f.name for f in attrs.fields(HostConfig)} == set(KEYED) | {"path", "pipeline",
                                                                         "events"}
