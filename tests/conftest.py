"""Shared test helpers: handler modules importable by path, config loading, the command line in
a subprocess, a fake clock."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # so YAML can say handler: "octo_handlers:rewrite_m107"


def load_yaml(text: str, path: str = "test.yaml"):
    from pipeline.config.reader import load_config
    from stages import stage_phases, stage_schemas
    return load_config(text, path, stage_schemas=stage_schemas(), stage_phases=stage_phases())


def load_service_yaml(text: str, path: str = "test.yaml"):
    """A whole service config (several printers; drop-ins beside `path` too)."""
    from pipeline.config.reader import load_service_config
    from stages import stage_phases, stage_schemas
    return load_service_config(text, path, stage_schemas=stage_schemas(),
                               stage_phases=stage_phases())


def open_printer(config, **kwargs):
    """`pipeline.link.printer.open_printer` with the pipeline built from the built-in stages."""
    from pipeline.hooks.registry import build_pipeline
    from pipeline.link.printer import open_printer as _open
    from stages import BUILTIN_STAGES
    return _open(config, build_pipeline(config.pipeline, BUILTIN_STAGES), **kwargs)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline.app.cli *args` run from the repository root, output captured as text.
    A non-zero exit is no exception (check=False): every caller asserts the exit code."""
    return subprocess.run([sys.executable, "-m", "pipeline.app.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(autouse=True)
def _private_home(monkeypatch, tmp_path_factory):
    """A home folder of the test's own: the built-in config keeps its state (the API key,
    the print journal) in ~/.printpipe/state, and one test's journal must not be another's
    interrupted print."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
