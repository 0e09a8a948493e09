"""The status page over plain HTTP (the browser drives it in test_page_browser.py): served
without a key while every API path still needs one, its Content-Security-Policy and other
headers, its weight on first load, nothing from another origin and nothing inline, its files
shipped as package data, and its event list equal to the catalogue."""

from __future__ import annotations

import re
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from fnmatch import fnmatch
from html.parser import HTMLParser
from importlib import resources

import httpx
from conftest import ROOT
from http_fixtures import KEY, serve_for_test, serve_printers_for_test

from pipeline.app.http import page
from pipeline.config.camera import WebcamSpec
from pipeline.events.names import Event

#: What the first load of the page may transfer, all assets together (the issue's bound).
WEIGHT_LIMIT = 100 * 1024
STATIC = ROOT + "/pipeline/app/http/static"


class Refs(HTMLParser):
    """Every src/href of the page, inline scripts and styles, and style attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.inline: list[str] = []
        self._tag = ""

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        self._tag = tag
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]
        if "style" in values or any(k.startswith("on") for k in values):
            self.inline.append(f"<{tag}> attribute")
        if tag == "style" or (tag == "script" and "src" not in values):
            self.inline.append(f"<{tag}> element")

    def handle_data(self, data):
        if self._tag in ("script", "style") and data.strip():
            self.inline.append(f"<{self._tag}> content")


@asynccontextmanager
async def keyless(tmp_path, **kwargs) -> AsyncIterator[httpx.AsyncClient]:
    """A client without a key to a real server (not connected to the printer)."""
    async with serve_for_test(tmp_path, connect=False, **kwargs) as srv, \
            httpx.AsyncClient(base_url=srv.url) as bare:
        yield bare


def refs_of(html: str) -> Refs:
    parser = Refs()
    parser.feed(html)
    return parser


def csp_of(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return dict((d.strip() + " ").split(" ", 1) for d in policy.split(";") if d.strip())


async def test_the_page_needs_no_key_but_the_api_still_does(tmp_path):
    async with keyless(tmp_path) as bare:
        r = await bare.get("/")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert "<title>printpipe</title>" in r.text
        for path, (_name, media_type) in page.ASSETS.items():
            r = await bare.get(path)
            assert r.status_code == 200 and r.headers["content-type"] == media_type, path
            assert (await bare.head(path)).status_code == 200
        # only those exact paths, only reading: everything else still needs the key
        for method, path in (("GET", "/api/job"), ("GET", "/index.html"),
                             ("GET", "/page.js/x"), ("POST", "/"), ("PUT", "/page.js"),
                             ("GET", "/api/events")):
            r = await bare.request(method, path)
            assert r.status_code == 401, (method, path)
            assert "API key is required" in r.json()["error"]
        r = await bare.get("/", headers={"X-Api-Key": "wrong-key-0123456789"})
        assert r.status_code == 200    # a stale key in the browser does not hide the page


async def test_the_page_has_a_strict_policy_and_no_inline_or_foreign_content(tmp_path):
    async with keyless(tmp_path) as bare:
        html = await bare.get("/")
        for path in page.ASSETS:
            r = html if path == "/" else await bare.get(path)
            csp = csp_of(r)
            assert csp["default-src"].strip() == "'self'", path
            assert csp["frame-ancestors"].strip() == "'none'"
            assert csp["object-src"].strip() == "'none'"
            assert csp["base-uri"].strip() == "'none'"
            for directive in ("script-src", "style-src", "connect-src", "img-src"):
                assert csp[directive].strip() == "'self'", directive
            assert "unsafe" not in r.headers["content-security-policy"]
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert r.headers["cache-control"] == "no-cache"
        refs = refs_of(html.text)
        assert refs.inline == []
        assert sorted(refs.refs) == ["icon.svg", "page.css", "page.js"]
        script = (await bare.get("/page.js")).text
        # the key goes in a header; the event stream is the one URL that carries it
        # (test_page_browser.py checks every request the browser makes)
        assert script.count("'?apikey='") == 1 and "'api/events' +" in script
        assert "headers['X-Api-Key'] = key" in script
        assert not re.search(r"https?://", script + html.text + (await bare.get(
            "/page.css")).text.replace("http://www.w3.org", ""))


def transferred(r: httpx.Response) -> int:
    """Bytes on the wire: status line, headers and body (never compressed here)."""
    head = len(b"HTTP/1.1 200 \r\n\r\n") + sum(len(k) + len(v) + 4 for k, v in r.headers.raw)
    return head + len(r.content)


async def test_the_first_load_weighs_under_100_kb(tmp_path):
    async with keyless(tmp_path) as bare:
        r = await bare.get("/")
        total = transferred(r)
        for ref in refs_of(r.text).refs:
            asset = await bare.get("/" + ref)
            assert asset.status_code == 200, ref
            total += transferred(asset)
    assert total < WEIGHT_LIMIT, f"the page weighs {total} bytes"
    with open(ROOT + "/README.md", encoding="utf-8") as f:
        readme = f.read()
    stated = re.search(r"weighs about (\d+) KB", readme)
    assert stated, "the README states the page's weight"
    assert abs(int(stated.group(1)) - total / 1024) <= 2, (stated.group(0), total)


async def test_an_unchanged_page_answers_304(tmp_path):
    async with keyless(tmp_path) as bare:
        first = await bare.get("/page.js")
        again = await bare.get("/page.js", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["content-security-policy"] == page.CSP
        other = await bare.get("/page.js", headers={"If-None-Match": '"something-else"'})
        assert other.status_code == 200 and other.content == first.content


async def test_without_keys_the_page_is_served_to_this_host_only(tmp_path):
    async with keyless(tmp_path, key=None, http_yaml="allow_anonymous: true") as bare:
        assert (await bare.get("/")).status_code == 200
        assert (await bare.get("/api/job")).status_code == 200   # the page's reads work
        r = await bare.get("/", headers={"Host": "evil.example"})
        assert r.status_code == 421                              # DNS rebinding


def test_the_page_files_are_package_data():
    """importlib.resources finds every file (as an installed package does), and pyproject's
    package-data globs cover each one, so a wheel ships them."""
    files = sorted(p.name for p in resources.files("pipeline.app.http").joinpath(
        page.ASSET_FOLDER).iterdir() if p.is_file())
    assert files == sorted({name for name, _type in [*page.ASSETS.values(),
                                                      *page.FARM_ASSETS.values()]})
    for name in files:
        assert page.read_asset(name)
    with open(ROOT + "/pyproject.toml", "rb") as f:
        data = tomllib.load(f)["tool"]["setuptools"]["package-data"]
    for name in files:
        relative = f"app/http/{page.ASSET_FOLDER}/{name}"
        assert any(fnmatch(relative, glob) for glob in data["pipeline"]), relative


def test_the_page_listens_to_every_catalogue_event():
    script = page.read_asset("page.js").decode()
    block = re.search(r"const EVENTS = \((.*?)\)\.split", script, re.S)
    assert block
    names = "".join(re.findall(r"'([^']*)'", block.group(1))).split()
    assert names == [e.value for e in Event]


async def test_several_printers_a_page_lists_them_and_each_page_works_under_its_prefix(
        tmp_path):
    async with serve_printers_for_test(tmp_path, ("a", "b"), connect=False) as farm, \
            httpx.AsyncClient(base_url=farm.serving.url) as bare:
        r = await bare.get("/")
        assert r.status_code == 200 and "<title>printpipe: printers</title>" in r.text
        refs = refs_of(r.text)
        assert refs.inline == [] and sorted(refs.refs) == ["farm.js", "icon.svg", "page.css"]
        for ref in refs.refs:   # relative: resolved under /
            asset = await bare.get("/" + ref)
            assert asset.status_code == 200 and csp_of(asset)["script-src"].strip() == "'self'"
        script = (await bare.get("/farm.js")).text
        assert "fetch('api/printers'" in script and "'printers/' + encodeURIComponent" in script
        assert "'X-Api-Key': key" in script and "apikey=' +" not in script
        assert (await bare.get("/api/printers")).status_code == 401   # the list needs the key
        listed = await bare.get("/api/printers", headers={"X-Api-Key": KEY})
        assert [p["name"] for p in listed.json()["printers"]] == ["a", "b"]
        # one printer's page under its prefix: its assets there, its script's paths relative
        # to it (none absolute, which would reach the main port's default printer)
        r = await bare.get("/printers/b/")
        assert r.status_code == 200 and "<title>printpipe</title>" in r.text
        for ref in refs_of(r.text).refs:
            assert (await bare.get("/printers/b/" + ref)).status_code == 200, ref
        script = (await bare.get("/printers/b/page.js")).text
        assert "api('GET', 'api/job')" in script and not re.search(r"'/api/", script)
        assert (await bare.get("/printers/b/api/job")).status_code == 401
        assert (await bare.get("/printers/b/api/job", headers={"X-Api-Key": KEY})
                ).status_code == 200


async def test_a_configured_webcam_is_shown_and_its_origin_alone_is_allowed_for_images(
        tmp_path):
    """The page holds the webcam card and the timelapse list; its script shows
    `webcam.stream` (or refreshed snapshots) from /api/settings and plays the movies of
    /api/timelapse fetched with the key header; the policy allows the webcam's origin for
    images only, and only when one is configured."""
    cam = ("webcam:\n  stream: http://Cam.local:8080/?action=stream\n"
           "  snapshot: http://127.0.0.1:9/snapshot.jpg\ntimelapse:\n  mode: zchange\n")
    async with serve_for_test(tmp_path, cam, connect=False) as srv, \
            httpx.AsyncClient(base_url=srv.url) as bare:
        html = await bare.get("/")
        csp = csp_of(html)
        assert csp["img-src"].split() == ["'self'", "http://cam.local:8080",
                                          "http://127.0.0.1:9"]
        for directive in ("script-src", "style-src", "connect-src", "default-src"):
            assert csp[directive].strip() == "'self'", directive
        assert csp["media-src"].split() == ["'self'", "blob:"]
        assert csp_of(await bare.get("/page.js")) == csp
        settings = (await srv.client.get("/api/settings")).json()["webcam"]
        assert settings["streamUrl"].startswith("http://Cam.local")  # what the script reads
    for tag in ('<img id="cam"', 'id="cam-card"', 'id="tl-card"', '<video id="tl-video"',
                'id="timelapses"'):
        assert tag in html.text, tag
    assert refs_of(html.text).inline == []
    script = page.read_asset("page.js").decode()
    assert "api('GET', 'api/settings')" in script and "cam.streamUrl" in script
    assert "cam.snapshotUrl" in script and "setTimeout(next, 2000)" in script
    assert "api('GET', 'api/timelapse')" in script
    assert "'downloads/timelapse/' + encodeURIComponent(movie.name)" in script
    assert "{'X-Api-Key': key}" in script and "URL.createObjectURL" in script
    assert "event.type === 'MovieDone'" in script


async def test_without_a_webcam_images_stay_this_origin_only(tmp_path):
    async with keyless(tmp_path) as bare:
        assert csp_of(await bare.get("/"))["img-src"].strip() == "'self'"


def test_webcam_sources_take_http_origins_and_leave_out_odd_urls():
    spec = WebcamSpec(stream="https://user:pw@[::1]:8443/s", snapshot="/webcam/?action=snap")
    assert page.webcam_sources(spec) == " https://[::1]:8443"
    assert page.webcam_sources(WebcamSpec(stream="/webcam/", snapshot="")) == ""
    odd = WebcamSpec.__new__(WebcamSpec)  # bypassing the config's own URL checks
    object.__setattr__(odd, "stream", "http://a;b/x")
    object.__setattr__(odd, "snapshot", "javascript:alert(1)")
    for name in ("flip_h", "flip_v"):
        object.__setattr__(odd, name, False)
    assert page.webcam_sources(odd) == ""
