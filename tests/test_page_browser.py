"""The status page in a real headless Chromium (Debian's `chromium`, driven by Playwright's sync
API with its executable_path; never `playwright install`) against `printpipe serve` in a
subprocess with the virtual printer: plain pytest tests, not trio ones, as Playwright's sync
API runs its own event loop.

A print: the key from the address fragment, Operational and the heaters, a target, a G-code
line, uploads by picker and by drop, a print with progress moving to PrintDone, a second one
paused, resumed and cancelled, an API error shown as written, a delete, a phone-sized screen;
the webcam stream and a timelapse movie played.
A wrong key shows why and the key field takes the right one. A restart of printpipe: the
page's event stream comes back by itself. The screenshot taken during the print goes to
$PRINTPIPE_SCREENSHOT (docs/status-page.png is made that way) or the test's temp folder.

Chromium missing skips these tests, unless PRINTPIPE_REQUIRE_BROWSER is set (.ci/run sets it
and installs the package).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import ROOT
from http_fixtures import KEY, config_text, printers_text

CHROMIUM = "/usr/bin/chromium"
#: The flags this machine's Chromium needs (Playwright adds --headless and its own fresh
#: profile folder is replaced by the test's: user_data_dir).
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Seconds the virtual printer waits before each ok: a 200-line file prints in about 3 s.
OK_DELAY = 0.015
WAIT = 20_000   # ms, Playwright's unit


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(autouse=True)
def _browser_available() -> None:
    reason = _missing()
    if reason and os.environ.get("PRINTPIPE_REQUIRE_BROWSER"):
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)


def gcode(lines: int) -> bytes:
    moves = "".join(f"G1 X{10 + i % 80} Y{10 + i * 7 % 80} F6000\n" for i in range(lines))
    return ("G28\n" + moves).encode()


@contextlib.contextmanager
def printpipe_serve(tmp_path, port: int = 0, anonymous: bool = False,
                    printers: tuple[str, ...] = (), extra: str = "") -> Iterator[str]:
    """`printpipe serve` in a subprocess (of the virtual `printers` when given; `extra`: more
    config); yields its URL, stops it with SIGTERM."""
    config = tmp_path / "printpipe.yaml"
    faults = f"virtual:\n  faults:\n    ok_delay: {OK_DELAY}\n" + extra
    text = (printers_text(tmp_path, printers, extra_yaml=faults) if printers else
            config_text(tmp_path, faults, key=None if anonymous else KEY,
                        http_yaml="allow_anonymous: true" if anonymous else ""))
    headers = {} if anonymous else {"X-Api-Key": KEY}
    config.write_text(text.replace("port: 0", f"port: {port}"))
    log = tmp_path / f"serve-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.app.cli", "serve", "-c",
                                 str(config)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not (found := re.search(r"serving the API on (http://\S+)", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        url = found.group(1).split(",")[0]
        ready = ([url + f"/printers/{name}/api/job" for name in printers] if printers
                 else [url + "/api/job"])
        while any(httpx.get(u, headers=headers).json()["state"] != "Operational"
                  for u in ready):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """One Chromium for the module (launching it costs a second or more); each test has its
    own context in it, a fresh profile of its own (storage and cookies are not shared)."""
    if _missing():
        pytest.skip(_missing())
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@contextlib.contextmanager
def chromium(browser) -> Iterator:
    """A page in a fresh Chromium profile (a new context of the module's browser), confirm()
    dialogs accepted, script errors kept."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT)
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.urls = []
        page.on("request", lambda r: page.urls.append(r.url))
        page.on("dialog", lambda d: d.accept())
        yield page
    finally:
        context.close()


def state_is(page, text: str) -> None:
    page.wait_for_function(
        "t => document.getElementById('printer-state').textContent === t", arg=text)


def logged(page, name: str, count: int = 1) -> None:
    """Wait until the event log shows `name` at least `count` times."""
    page.wait_for_function(
        "([n, c]) => [...document.querySelectorAll('#log b')]"
        ".filter(b => b.textContent === n).length >= c", arg=[name, count])


def progress(page) -> float:
    return float(page.eval_on_selector("#job-progress", "p => p.value"))


def plotted(page, variable: str) -> int:
    """How many pixels of the plot have the colour of the CSS `variable` (a heater's)."""
    return page.evaluate("""(variable) => {
        const style = getComputedStyle(document.documentElement);
        const hex = style.getPropertyValue(variable).trim();
        const want = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
        const canvas = document.getElementById('plot');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let count = 0;
        for (let i = 0; i < data.length; i += 4) {
            const off = want.reduce((sum, v, k) => sum + Math.abs(data[i + k] - v), 0);
            if (data[i + 3] > 100 && off < 90) count++;
        }
        return count;
    }""", variable)


def drop_file(page, name: str, content: bytes) -> None:
    """Drag a file onto the drop zone, as a file manager does."""
    page.evaluate("""([name, text]) => {
        const data = new DataTransfer();
        data.items.add(new File([text], name, {type: 'text/x-gcode'}));
        const zone = document.getElementById('drop');
        for (const type of ['dragover', 'drop']) {
            zone.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true,
                                                    cancelable: true}));
        }
    }""", [name, content.decode()])


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[str]:
    """One `printpipe serve` for the tests that need no restart."""
    if _missing():
        pytest.skip(_missing())
    with printpipe_serve(tmp_path_factory.mktemp("served")) as url:
        yield url


def test_the_page_shows_and_drives_a_print(tmp_path, served, browser):
    url = served
    shot = os.environ.get("PRINTPIPE_SCREENSHOT") or str(tmp_path / "status-page.png")
    first, second = tmp_path / "first.gcode", gcode(1500)
    first.write_bytes(gcode(200))
    with chromium(browser) as page:
        page.goto(f"{url}/#apikey={KEY}")
        state_is(page, "Operational")
        assert page.url == url + "/"     # the key left the address bar ...
        # ... and stays in this browser
        assert page.evaluate("() => localStorage.getItem('printpipe.apikey')") == KEY
        page.wait_for_selector("#link-state:text('Live')")
        for heater in ("tool0", "bed"):
            page.wait_for_selector(f"tr[data-heater={heater}] td:text('°C')")
        # a target, with the keyboard: type it, Enter
        page.fill("#target-bed", "60")
        page.press("#target-bed", "Enter")
        page.wait_for_selector("tr[data-heater=bed] td:nth-child(3):text('60.0 °C')")
        page.fill("#target-tool0", "200")
        page.press("#target-tool0", "Enter")
        # a G-code line: G28 fires Home, which the event log shows
        page.fill("#gcode-line", "G28")
        page.press("#gcode-line", "Enter")
        page.wait_for_selector("#gcode-status:text('Sent G28.')")
        logged(page, "Home")
        # an error from the API, shown as written
        refused = httpx.post(url + "/api/printer/command", json={"commands": ["M104 S400"]},
                             headers={"X-Api-Key": KEY})
        assert refused.status_code == 400
        page.fill("#gcode-line", "M104 S400")
        page.press("#gcode-line", "Enter")
        page.wait_for_selector("#alert:not([hidden])")
        assert page.inner_text("#alert-text") == "Sending M104 S400: " + refused.json()["error"]
        # uploads: the picker, then a drop
        page.set_input_files("#upload", str(first))
        page.wait_for_selector("#files li[data-path='first.gcode']")
        drop_file(page, "second.gcode", second)
        page.wait_for_selector("#files li[data-path='second.gcode']")
        page.wait_for_selector("#upload-status:text('Uploaded second.gcode.')")

        # the first print (select, then the job's Print): progress moves, a screenshot, PrintDone
        page.click("button[aria-label='Select first.gcode']")
        page.wait_for_selector("#files li.selected[data-path='first.gcode']")
        page.click("#job-start:enabled")
        page.wait_for_selector("#alert", state="hidden")  # a good action clears the error
        logged(page, "PrintStarted")
        page.wait_for_function("() => document.getElementById('job-progress').value > 0")
        seen = progress(page)
        page.wait_for_function(f"() => document.getElementById('job-progress').value > {seen}")
        assert page.inner_text("#job-file") == "first.gcode"
        assert re.fullmatch(r"\d+:\d\d", page.inner_text("#job-elapsed"))
        # the heaters' lines are on the plot (a few pixels of a 2 px line in each colour)
        assert plotted(page, "--bed") > 20 and plotted(page, "--h0") > 20
        page.screenshot(path=shot, full_page=True)
        logged(page, "PrintDone")
        state_is(page, "Operational")
        page.wait_for_selector("#job-percent:text('100.0 %')")

        # the second (the file's own Print button): pause (keyboard), resume, cancel
        page.click("button[aria-label='Print second.gcode']")
        state_is(page, "Printing")
        page.wait_for_selector("#job-file:text('second.gcode')")
        page.wait_for_function("() => document.getElementById('job-progress').value > 0")
        page.focus("#job-pause")
        page.keyboard.press("Enter")
        state_is(page, "Paused")
        logged(page, "PrintPaused")
        paused = progress(page)
        page.wait_for_timeout(600)
        assert progress(page) == paused
        page.click("#job-resume")
        logged(page, "PrintResumed")
        page.wait_for_function(f"() => document.getElementById('job-progress').value > {paused}")
        page.click("#job-cancel")
        logged(page, "PrintCancelled")
        state_is(page, "Operational")
        assert progress(page) < 100

        page.click("button[aria-label='Switch Bed off']")
        page.wait_for_selector("tr[data-heater=bed] td:nth-child(3):text('0.0 °C')")
        page.click("button[aria-label='Delete first.gcode']")
        page.wait_for_selector("#files li[data-path='first.gcode']", state="detached")
        # the printer disconnected elsewhere: the page offers to connect it again
        httpx.post(url + "/api/connection", json={"command": "disconnect"},
                   headers={"X-Api-Key": KEY}).raise_for_status()
        state_is(page, "Offline")
        page.click("#connect")
        state_is(page, "Operational")
        assert page.is_hidden("#connect")
        # a phone: nothing wider than the screen
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        assert page.errors == []
        # the key travels in a header; the event stream's URL is the one place it shows
        assert page.urls[0] == url + "/"     # the fragment never leaves the browser
        carrying = {u.split("?")[0] for u in page.urls if KEY in u}
        assert carrying == {url + "/api/events"}
        assert any(u.startswith(url + "/api/printer") for u in page.urls)
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_wrong_key_says_so_and_the_field_takes_the_right_one(tmp_path, served, browser):
    url = served
    with chromium(browser) as page:
        page.goto(url + "/")                   # no key at all: the field asks for it
        page.wait_for_selector("#key-form:not([hidden])")
        assert "needs its API key" in page.inner_text("#key-message")
        page.goto(f"{url}/#apikey=not-the-key-0123456789")
        page.wait_for_selector("#key-message:text('refused this API key')")  # (a hash change:
        # the form shows already, the refusal comes with the answer)
        message = page.inner_text("#key-message")
        assert "refused this API key: invalid API key" in message
        assert page.is_hidden("#main")
        page.fill("#key-input", KEY)
        page.press("#key-input", "Enter")
        state_is(page, "Operational")
        assert page.evaluate("() => localStorage.getItem('printpipe.apikey')") == KEY
        page.reload()                          # the key is kept: no question the second time
        state_is(page, "Operational")
        assert page.is_hidden("#key-form")
        page.click("#change-key")              # and forgotten on request
        page.wait_for_selector("#key-form:not([hidden])")
        assert page.evaluate("() => localStorage.getItem('printpipe.apikey')") is None
        assert page.errors == []


def test_the_event_stream_comes_back_after_a_restart(tmp_path, browser):
    with chromium(browser) as page:
        with printpipe_serve(tmp_path) as url:
            page.goto(f"{url}/#apikey={KEY}")
            page.wait_for_selector("#link-state:text('Live')")
        page.wait_for_selector("#link-state:text('Reconnecting…')")
        port = int(url.rsplit(":", 1)[1])
        with printpipe_serve(tmp_path, port=port):
            page.wait_for_selector("#link-state:text('Live')")
            page.fill("#gcode-line", "G28")        # and it drives the new process
            page.press("#gcode-line", "Enter")
            logged(page, "Home")


def test_without_keys_the_page_works_under_the_anonymous_rules(tmp_path, browser):
    """No key asked; an upload (multipart) and a target (JSON) pass the guards that refuse
    what another site's page could send."""
    file = tmp_path / "cube.gcode"
    file.write_bytes(gcode(5))
    with printpipe_serve(tmp_path, anonymous=True) as url, chromium(browser) as page:
        page.goto(url + "/")
        state_is(page, "Operational")
        page.wait_for_selector("#link-state:text('Live')")
        assert page.is_hidden("#key-form") and page.is_hidden("#change-key")
        page.set_input_files("#upload", str(file))
        page.wait_for_selector("#files li[data-path='cube.gcode']")
        page.fill("#target-bed", "45")
        page.press("#target-bed", "Enter")
        page.wait_for_selector("tr[data-heater=bed] td:nth-child(3):text('45.0 °C')")
        assert page.is_hidden("#alert")
        assert page.errors == []


def test_several_printers_the_page_lists_them_and_opens_one(tmp_path, browser):
    with printpipe_serve(tmp_path, printers=("a", "b")) as url, chromium(browser) as page:
        page.goto(f"{url}/#apikey={KEY}")
        for name in ("a", "b"):
            page.wait_for_selector(f"[data-printer={name}] .pill:text('Operational')")
            page.wait_for_selector(f"[data-printer={name}] [data-role=temperatures]"
                                   ":text('tool0 ')")
        page.click("[data-printer=b] h2 a")       # opens b's own page under its prefix
        state_is(page, "Operational")
        assert page.url == url + "/printers/b/"
        assert page.inner_text("#title") == "printpipe · b"
        page.wait_for_selector("#link-state:text('Live')")
        page.fill("#gcode-line", "G28")
        page.press("#gcode-line", "Enter")
        logged(page, "Home")
        # every call of b's page went to b's prefix: none reached the main port's /api
        calls = [u for u in page.urls if "/api/" in u and u != url + "/api/printers"]
        assert calls and all(u.startswith(url + "/printers/b/api/") for u in calls), calls
        page.click("#farm-link")                  # and back to all of them
        page.wait_for_selector("[data-printer=a] .pill:text('Operational')")
        assert page.url == url + "/"
        assert page.errors == []


def test_the_webcam_stream_shows_and_a_timelapse_movie_plays(tmp_path, browser):
    """The stream's <img> beside the job, and a movie of the timelapse folder listed and
    played in the <video> (fetched with the key header: no URL carries the key)."""
    movies = tmp_path / "state" / "timelapse"
    movies.mkdir(parents=True)
    if shutil.which("ffmpeg") is None:
        pytest.skip("no ffmpeg to make a movie")
    made = subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                           "color=c=red:s=64x48:d=1", "-c:v", "libvpx",
                           str(movies / "cube_20260101.webm")], capture_output=True, check=False)
    if made.returncode:
        pytest.skip(f"ffmpeg cannot make a webm: {made.stderr[-200:]!r}")
    cam = ("webcam:\n  stream: /webcam/?action=stream\n"
           "  snapshot: http://127.0.0.1:9/snapshot.jpg\ntimelapse:\n  mode: zchange\n")
    with printpipe_serve(tmp_path, extra=cam) as url, chromium(browser) as page:
        page.goto(url + "/#apikey=" + KEY)
        state_is(page, "Operational")
        page.wait_for_selector("#cam-card:not([hidden])")
        assert page.get_attribute("#cam", "src") == "/webcam/?action=stream"
        page.wait_for_selector("#timelapses .name:text-is('cube_20260101.webm')")
        page.click("#timelapses a[aria-label='Play cube_20260101.webm']")
        page.wait_for_function(
            "() => { const v = document.getElementById('tl-video');"
            " return !v.hidden && v.src.startsWith('blob:') && v.readyState >= 1; }")
        assert page.evaluate("document.getElementById('tl-video').duration") > 0.5
        assert page.is_hidden("#alert") and page.errors == []
        fetched = [u for u in page.urls if "downloads/timelapse/" in u]
        assert fetched and all("apikey" not in u for u in fetched)
