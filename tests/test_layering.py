"""The tree is the architecture: every module's imports (absolute, relative, inside functions
and under TYPE_CHECKING) are read with `ast`, resolved to modules and packages, and checked
against the allowed direction per package, transitively; the import graph has no cycle; no
package holds more than 12 modules; each package says what lives there and what it may import.

The checker is also run on doctored sources (an `import trio` in the engine, a relative import
of the link in the session) to show that it bites.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Mapping

import attrs
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOP = ("pipeline", "stages")

#: The layers, bottom up, and the layers each may import directly (its own is always allowed).
#: "core" is the root modules of `pipeline` (errors, gcode, phases, the package itself).
ALLOWED: Mapping[str, frozenset[str]] = {
    "core": frozenset(),
    "events": frozenset({"core"}),
    "config": frozenset({"core", "events"}),
    "protocol": frozenset({"core", "config"}),
    "hooks": frozenset({"core", "events", "config"}),
    "session": frozenset({"core", "events", "config", "protocol", "hooks", "timelapse"}),
    "virtual": frozenset({"core", "events", "config", "protocol", "hooks", "session"}),
    "stages": frozenset({"core", "events", "config", "protocol", "hooks"}),
    "files": frozenset({"core", "events", "config", "hooks"}),
    "fanout": frozenset({"core", "events", "config"}),
    "timelapse": frozenset({"core", "events", "config", "hooks"}),
    "camera": frozenset({"core", "events", "config", "hooks", "timelapse", "fanout"}),
    "link": frozenset({"core", "events", "config", "protocol", "hooks", "session", "virtual"}),
    "app": frozenset({"core", "events", "config", "protocol", "hooks", "session", "virtual",
                      "stages", "files", "fanout", "link", "timelapse", "camera"}),
}
#: Sans-IO: these packages never reach (directly or through what they import) an IO package.
PURE = frozenset({"core", "events", "config", "protocol", "hooks", "session", "virtual",
                  "stages", "timelapse"})
IO_PACKAGES = frozenset({
    "trio", "trio_serial", "paho", "hypercorn", "starlette", "httpx", "httpcore", "multipart",
    "python_multipart", "anyio", "asyncio", "socket", "select", "selectors", "subprocess",
    "threading", "termios", "tty", "pty", "fcntl", "signal", "shutil", "tempfile", "os",
    "serial"})
MAX_MODULES = 12


@attrs.frozen
class Imports:
    internal: frozenset[str]   # pipeline/stages modules (and packages) this module imports
    external: frozenset[str]   # top-level names of everything else


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(overrides: Mapping[str, str] | None = None) -> dict[str, tuple[str, bool]]:
    """module name -> (source text, is a package), with `overrides` by relative path."""
    out = {}
    for top in TOP:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            text = (overrides or {}).get(rel, None)
            out[module_name(path)] = (path.read_text() if text is None else text,
                                      path.name == "__init__.py")
    return out


def resolve(name: str, known: set[str]) -> str | None:
    """The longest known module that `name` is or lies in."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def read_imports(module: str, text: str, is_package: bool, known: set[str]) -> Imports:
    internal: set[str] = set()
    external: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[:len(base) - (node.level - 1)]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module or ""
            targets = [parent] + [f"{parent}.{a.name}" for a in node.names]
        for target in targets:
            if target.split(".")[0] in TOP:
                found = resolve(target, known)
                if found is not None and found != module:
                    internal.add(found)
            elif target:
                external.add(target.split(".")[0])
    return Imports(frozenset(internal), frozenset(external))


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "stages":
        return "stages"
    if len(parts) == 1 or parts[1] in ("errors", "gcode", "phases", "wire"):
        return "core"
    return parts[1]


def import_graph(overrides: Mapping[str, str] | None = None) -> dict[str, Imports]:
    src = sources(overrides)
    known = set(src)
    return {m: read_imports(m, text, pkg, known) for m, (text, pkg) in src.items()}


def reachable(graph: Mapping[str, Imports], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        for dep in graph[m].internal:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def violations(graph: Mapping[str, Imports]) -> list[str]:
    """Every import against the direction, and every pure module that reaches IO."""
    out = []
    for module, imports in sorted(graph.items()):
        layer = layer_of(module)
        for dep in sorted(imports.internal):
            other = layer_of(dep)
            if other != layer and other not in ALLOWED[layer]:
                out.append(f"{module} ({layer}) imports {dep} ({other})")
        if layer in PURE:
            for dep in sorted({module} | reachable(graph, module)):
                bad = graph[dep].external & IO_PACKAGES
                if bad:
                    via = "" if dep == module else f" through {dep}"
                    out.append(f"{module} ({layer}, pure) reaches {', '.join(sorted(bad))}{via}")
    return out


def cycles(graph: Mapping[str, Imports]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v].internal:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


GRAPH = import_graph()


def test_every_module_is_in_a_known_layer():
    assert {layer_of(m) for m in GRAPH} <= set(ALLOWED)


def test_no_import_points_against_the_layers_and_pure_layers_never_reach_io():
    assert violations(GRAPH) == []


def test_the_import_graph_has_no_cycle():
    assert cycles(GRAPH) == []


def test_nothing_outside_app_imports_app():
    bad = [(m, d) for m, imp in GRAPH.items() for d in imp.internal
           if layer_of(d) == "app" and layer_of(m) != "app"]
    assert bad == []


@pytest.mark.parametrize("package", sorted({p.parent for p in (ROOT / "pipeline").rglob("*.py")}
                                           | {ROOT / "stages"}), ids=str)
def test_packages_are_small_and_say_what_they_may_import(package):
    modules = [p for p in package.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(modules) <= MAX_MODULES, f"{package} holds {len(modules)} modules"
    init = package / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    assert len(doc.splitlines()) >= 2, f"{init} does not say what lives there"
    if package.name not in ("pipeline", "stages"):
        assert "May import" in doc or "may import" in doc, f"{init} does not say what it may import"


@pytest.mark.parametrize("path", sorted(p for top in TOP for p in (ROOT / top).rglob("*.py")
                                        if p.name != "__init__.py"), ids=str)
def test_every_module_opens_with_what_lives_there(path):
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path} has no module docstring"


def test_the_session_parts_depend_on_narrow_interfaces_not_on_the_core():
    """Only the core wires the parts (and the handler facade wraps it): a part that imported
    the core could reach anything in the session again."""
    allowed = {"pipeline.session.core", "pipeline.session.facade"}
    reaching = sorted(m for m, imp in GRAPH.items() if m.startswith("pipeline.session.")
                      and m not in allowed and "pipeline.session.core" in imp.internal)
    assert reaching == []


# ---- the checker bites ---------------------------------------------------------------------

def _doctored(rel: str, extra: str) -> dict[str, Imports]:
    text = (ROOT / rel).read_text()
    return import_graph({rel: text + "\n" + extra + "\n"})


def test_it_fails_when_the_engine_imports_trio():
    found = violations(_doctored("pipeline/protocol/engine.py", "import trio"))
    assert "pipeline.protocol.engine (protocol, pure) reaches trio" in found
    # and every pure module that imports the engine reaches trio through it
    assert any(f.startswith("pipeline.session.core (session, pure) reaches trio through")
               for f in found)


def test_it_fails_when_the_session_imports_the_link_relatively():
    graph = _doctored("pipeline/session/core.py", "def _late():\n    from ..link import serial")
    found = violations(graph)
    assert "pipeline.session.core (session) imports pipeline.link.serial (link)" in found
    assert any("reaches trio through pipeline.link.serial" in f for f in found)
    assert cycles(graph)  # the link imports the session core: a cycle too


def test_it_sees_imports_under_type_checking_and_in_functions():
    graph = _doctored("pipeline/gcode.py",
                      "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from pipeline.session import core\n"
                      "def f():\n    import stages")
    found = violations(graph)
    assert "pipeline.gcode (core) imports pipeline.session.core (session)" in found
    assert "pipeline.gcode (core) imports stages (stages)" in found


# ---- the edges drive the printer through the control surface --------------------------------

EDGE_MODULES = sorted([*(ROOT / "pipeline/app/http").rglob("*.py"),
                       *(ROOT / "pipeline/app/cli").glob("*.py"),
                       *(ROOT / "pipeline/app/mqtt").glob("*.py"), ROOT / "pipeline/app/serve.py"])
#: What only the session and the control surface may touch.
SESSION_INSIDES = frozenset({"core", "jobs", "tracker", "engine", "queues", "session", "link",
                             "_printer"})


def session_reaches(text: str) -> list[str]:
    return sorted({f"line {n.lineno}: .{n.attr}" for n in ast.walk(ast.parse(text))
                   if isinstance(n, ast.Attribute) and n.attr in SESSION_INSIDES})


@pytest.mark.parametrize("path", EDGE_MODULES, ids=str)
def test_edges_use_only_the_control_surface(path):
    assert session_reaches(path.read_text()) == []


def test_the_edge_check_bites():
    assert session_reaches("def f(api):\n    api.control.session.core.jobs.pause()\n") == [
        "line 2: .core", "line 2: .jobs", "line 2: .session"]


# ---- each edge acts on the one printer it was handed -----------------------------------------

PRINTER_EDGES = sorted([*(ROOT / "pipeline/app/http").rglob("*.py"),
                        *(ROOT / "pipeline/app/mqtt").glob("*.py")])
#: Where the printers are kept by name: the service and the main port's dispatcher.
PRINTER_REGISTRIES = frozenset({"pipeline.app.service", "pipeline.app.dispatch"})


def printer_lookups(module: str, text: str) -> list[str]:
    """Where an edge module reaches for a printer by name instead of using the one it was
    handed (an endpoint: its app's state, `api_of(request).control`; the MQTT bridge: its
    control): an import of the printers' registries, or a `.printers[...]`/`.printers.get`."""
    imports = GRAPH[module].internal if module in GRAPH else frozenset()
    found = [f"imports {d}" for d in sorted(imports) if d in PRINTER_REGISTRIES]
    found += [f"line {node.lineno}: .printers" for node in ast.walk(ast.parse(text))
              if isinstance(node, ast.Attribute) and node.attr == "printers"]
    return found


@pytest.mark.parametrize("path", PRINTER_EDGES, ids=str)
def test_http_endpoints_and_mqtt_take_their_printer_from_their_app_never_globally(path):
    assert printer_lookups(module_name(path), path.read_text()) == []


def test_the_printer_lookup_check_bites():
    assert printer_lookups("x", "def f(service):\n    service.printers['a'].pause()\n") == [
        "line 2: .printers"]
