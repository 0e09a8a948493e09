"""The sans-IO layer imports neither trio nor IO modules, and pipeline/ never imports stages/."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SANS_IO = ["errors", "gcode", "replies", "config", "config_schema", "config_service", "phases",
           "protocol", "engine_settings", "engine_events", "resend", "protocol_timeouts",
           "firmware_report", "rules", "printjob", "job", "reactions", "states", "scripts",
           "script_runner", "script_hooks", "storage_hooks", "fastpath", "chain", "registry",
           "host", "tracking", "facade", "eventnames", "placeholders", "analysis",
           "virtual/firmware", "virtual/faults", "virtual/thermal"]
FORBIDDEN = {"trio", "trio_serial", "os", "socket", "select", "selectors", "subprocess",
             "asyncio", "threading", "termios", "tty", "pty", "fcntl", "httpx", "hypercorn"}


def imported(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", [m for m in SANS_IO
                                    if (ROOT / "pipeline" / f"{m}.py").exists()])
def test_sans_io_module_imports_no_trio_or_io(module):
    bad = imported(ROOT / "pipeline" / f"{module}.py") & FORBIDDEN
    assert not bad, f"pipeline/{module}.py imports {sorted(bad)}"


def test_the_sans_io_list_covers_the_core():
    for m in ("protocol", "chain", "host", "config", "gcode", "replies", "virtual/firmware"):
        assert (ROOT / "pipeline" / f"{m}.py").exists(), m


@pytest.mark.parametrize("path", sorted((ROOT / "pipeline").rglob("*.py")), ids=str)
def test_pipeline_never_imports_stages_at_module_level(path):
    tree = ast.parse(path.read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    for node in top:
        mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""])
        assert not any(m.split(".")[0] == "stages" for m in mods), path


@pytest.mark.parametrize("path", sorted((ROOT / "stages").glob("*.py")), ids=str)
def test_stages_import_only_the_sans_io_layer(path):
    allowed_pipeline = {f"pipeline.{m.replace('/', '.')}" for m in SANS_IO} | {"pipeline"}
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("pipeline"):
                assert node.module in allowed_pipeline, (path, node.module)
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            assert node.module.split(".")[0] not in FORBIDDEN - {"os"}, (path, node.module)
