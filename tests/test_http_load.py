"""The print keeps its priority under REST load: tools/loadtest.py's short variant (50
keep-alive clients, niced, against `printpipe serve` printing on the virtual printer, each in a
process of its own). The load comes in four bursts of half a second with as long unloaded
between them, so the printer's lines/s under load is compared with its rate in the same
seconds of the same run (the machine's speed drifts by more than the margin over seconds).
Every request is answered 200 or refused 503 with Retry-After.

Not part of the default run (PRINTPIPE_LOAD_TEST=1 runs it): it takes about 12 s, and on the
shared 2-core VM 2 of 10 runs kept less than 0.8 (0.64 and 0.78; the others 0.84-1.01)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

#: The share of its unloaded lines/s the print keeps at least (the load test's acceptance:
#: 0.8 with 200 clients for 20 s; see the README's figures).
KEPT = 0.8


@pytest.mark.skipif(not os.environ.get("PRINTPIPE_LOAD_TEST"),
                    reason="12 s, and not robust on a busy machine: PRINTPIPE_LOAD_TEST=1 runs it")
def test_the_print_keeps_its_rate_under_rest_load_and_every_request_is_answered():
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "loadtest.py"), "--clients", "50",
         "--seconds", "2", "--phases", "4", "--nice", "19", "--settle", "0.5",
         "--lines", "60000"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    assert figures["other"] == 0, figures           # only 200s and 503s with Retry-After
    assert figures["answered"] > 0, figures
    assert figures["file_left"], figures            # the print ran during the whole load
    assert figures["fraction"] >= KEPT, figures
