"""The file hook contracts (seed 002), pure: the extension tree
(`filemanager.extension_tree`) and the file wrapper handed to `filemanager.preprocessor`
stages. The storage that calls them at their moments lives in pipeline/files/storage.py.
"""

from __future__ import annotations

import logging
from typing import Any, BinaryIO, Protocol

from pipeline.hooks.chain import Pipeline
from pipeline.phases import Phase

log = logging.getLogger("printpipe.pipeline")

DEFAULT_EXTENSIONS: dict[str, Any] = {"machinecode": {"gcode": ["gcode", "gco", "g"]}}


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list):
            into[key] = into[key] + [v for v in value if v not in into[key]]
        else:
            into[key] = value


def extension_tree(pipeline: Pipeline) -> dict[str, Any]:
    """The accepted-extension tree: the built-in one merged with every stage's additions."""
    tree: dict[str, Any] = {"machinecode": {"gcode": list(DEFAULT_EXTENSIONS["machinecode"]
                                                          ["gcode"])}}
    for st, extra in pipeline.call(Phase.FILEMANAGER_EXTENSION_TREE):
        if isinstance(extra, dict):
            _merge(tree, extra)
        elif extra is not None:
            st.counters.errors += 1
            log.error("stage %r in %s returned %s, not a dict; ignored", st.id,
                      Phase.FILEMANAGER_EXTENSION_TREE.value, type(extra).__name__)
    return tree


def extensions_of(tree: dict[str, Any], kind: str = "machinecode") -> frozenset[str]:
    out: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            out.update(str(x).lower() for x in node)
    walk(tree.get(kind, {}))
    return frozenset(out)


class FileWrapper(Protocol):
    """What preprocessors get and may return (OctoPrint's AbstractFileWrapper)."""

    filename: str

    def stream(self) -> BinaryIO: ...

    def save(self, path: str) -> None: ...


def preprocess(pipeline: Pipeline, path: str, file_object: FileWrapper, *,
               links: Any = None, printer_profile: dict[str, Any] | None = None,
               allow_overwrite: bool = False) -> FileWrapper:
    """Run the preprocessor stages in order; each may replace the file object."""
    for st, result in pipeline.call(Phase.FILEMANAGER_PREPROCESSOR, path, file_object,
                                    links=links, printer_profile=printer_profile,
                                    allow_overwrite=allow_overwrite):
        if result is None:
            continue
        if not callable(getattr(result, "save", None)):
            st.counters.errors += 1
            log.error("stage %r in %s returned %s without save(); the file is kept as it was",
                      st.id, Phase.FILEMANAGER_PREPROCESSOR.value, type(result).__name__)
            continue
        file_object = result
    return file_object
