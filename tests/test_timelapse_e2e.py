"""Timelapse end to end: `printpipe serve` with the virtual printer and a test webcam
(webcam_fixtures.py). zchange and timed prints give one frame per layer / interval, the post
roll and a movie ffprobe agrees with; failing cameras give CaptureFailed and an exact print
that never waited for them; steady frames park the head between layers and put it back
exactly; the capture hooks run as stages; /api/timelapse and the downloads answer."""

from __future__ import annotations

import os
import pathlib

import pytest
import timelapse_handlers
import trio
from http_fixtures import serve_for_test
from sample_prints import file_lines
from webcam_fixtures import make_jpegs, needs_ffmpeg, probe, webcam

from pipeline.events.names import PAYLOAD_KEYS, Event
from pipeline.gcode import param_value
from pipeline.virtual.pair import expected_commands

pytestmark = needs_ffmpeg
TL_EVENTS = [e.value for e in (Event.CAPTURE_START, Event.CAPTURE_DONE, Event.CAPTURE_FAILED,
                               Event.POST_ROLL_START, Event.POST_ROLL_END,
                               Event.MOVIE_RENDERING, Event.MOVIE_DONE, Event.MOVIE_FAILED,
                               Event.PRINT_DONE)]


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    return make_jpegs(tmp_path_factory.mktemp("jpegs"))


def layered(layers: int = 3, moves: int = 3, dwell: int = 0) -> str:
    """A small print: `layers` layers of `moves` extruding moves each."""
    lines = ["G28", "G90", "M82", "G92 E0", "G1 Z0.3 F600", "G1 X10 Y10 F3000"]
    e = 0.0
    for n in range(layers):
        if n:
            lines.append(f"G1 Z{0.3 + 0.2 * n:.1f} F600")
        for i in range(moves):
            e += 0.5
            lines.append(f"G1 X{10 + 5 * (i + 1)} Y{10 + 3 * (i % 2)} E{e:.2f} F1200")
        if dwell:
            lines.append(f"G4 P{dwell}")
    return "\n".join(lines) + "\n"


def config(cam_url: str, mode: str = "zchange", extra: str = "", timeout: float = 2.0) -> str:
    return (f"webcam:\n  snapshot: {cam_url}\n  snapshot_timeout: {timeout}\n"
            f"timelapse:\n  mode: {mode}\n  min_delay: 0\n  fps: 10\n  interval: 0.2\n"
            f"  render_while_printing: true\n" + extra)


async def print_file(server, tmp_path, text: str) -> list[str]:
    path = tmp_path / "layers.gcode"
    path.write_text(text)
    control = server.service
    control.select(str(path))
    await control.start()
    result = await control.wait_job_end(30)
    assert result is not None and result.outcome.name == "DONE"
    return expected_commands(text)


def keys_ok(events) -> None:
    for ev in events:
        assert set(ev.payload) <= set(PAYLOAD_KEYS[Event(ev.name)]), ev
        assert set(ev.payload) >= {k for k in PAYLOAD_KEYS[Event(ev.name)]
                                   if k not in ("error", "returncode", "reason", "url")}, ev


async def test_zchange_print_gives_a_frame_per_layer_the_post_roll_and_a_movie(tmp_path, jpegs):
    async with webcam(jpegs) as cam, serve_for_test(
            tmp_path, config(cam.url, extra="  post_roll: 0.2\n")) as server:
        rec = server.events(TL_EVENTS)
        expected = await print_file(server, tmp_path, layered(3))
        done = await rec.wait_for(Event.MOVIE_DONE, timeout=30)
        assert file_lines(server.service.session.virtual.firmware.accepted,
                          expected) == expected
        assert len(rec.of(Event.CAPTURE_DONE)) == 3 + 1   # three layers, the finished print
        start = rec.of(Event.POST_ROLL_START)[0].payload
        assert start == {"postroll_duration": 0.2, "postroll_length": 2, "postroll_fps": 10.0}
        names = rec.names()
        assert names.index(Event.POST_ROLL_END) < names.index(Event.MOVIE_RENDERING)
        keys_ok(rec.seen)
        movie = done.payload["movie"]
        assert done.payload["movie_basename"] == os.path.basename(movie)
        assert done.payload["gcode"] == "layers.gcode"
        assert done.payload["movie_prefix"].startswith("layers_")
        info = probe(movie)
        assert (int(info["nb_read_frames"]), info["r_frame_rate"], info["codec_name"]) == (
            3 + 1 + 2, "10/1", "h264")
        # the API lists it, downloads it with the key only, and deletes it
        listing = (await server.client.get("/api/timelapse?unrendered=true")).json()
        (entry,) = listing["files"]
        assert entry["name"] == done.payload["movie_basename"] and listing["unrendered"] == []
        assert listing["config"]["type"] == "zchange" and listing["enabled"] is True
        got = await server.client.get(entry["url"])
        assert got.status_code == 200 and got.content == pathlib.Path(movie).read_bytes()
        anonymous = await server.client.get(entry["url"], headers={"X-Api-Key": ""})
        assert anonymous.status_code in (401, 403)
        assert (await server.client.delete(f"/api/timelapse/{entry['name']}")).status_code == 204
        assert not os.path.exists(movie)
        assert (await server.client.delete(f"/api/timelapse/{entry['name']}")).status_code == 404


async def test_timed_print_shoots_every_interval_and_through_the_post_roll(tmp_path, jpegs):
    async with webcam(jpegs) as cam, serve_for_test(
            tmp_path, config(cam.url, "timed", "  post_roll: 0.4\n")) as server:
        rec = server.events(TL_EVENTS)
        await print_file(server, tmp_path, layered(2, dwell=250))
        done = await rec.wait_for(Event.MOVIE_DONE, timeout=30)
        shots = len(rec.of(Event.CAPTURE_DONE))
        assert shots >= 3   # >= 0.5 s of print, then 0.4 s of post roll, at 0.2 s
        assert rec.of(Event.POST_ROLL_START)[0].payload["postroll_length"] == 2
        keys_ok(rec.seen)
        info = probe(done.payload["movie"])
        assert (int(info["nb_read_frames"]), info["r_frame_rate"]) == (shots, "10/1")


@pytest.mark.parametrize("mode", ["error", "garbage", "slow"])
async def test_a_failing_camera_gives_capture_failed_and_the_print_never_waits(
        tmp_path, jpegs, mode):
    async with webcam(jpegs, mode) as cam, serve_for_test(
            tmp_path, config(cam.url, timeout=0.5)) as server:
        rec = server.events(TL_EVENTS)
        started = trio.current_time()
        expected = await print_file(server, tmp_path, layered(2))
        took = trio.current_time() - started
        assert file_lines(server.service.session.virtual.firmware.accepted,
                          expected) == expected
        if mode == "slow":
            assert took < 0.5   # shorter than one snapshot's timeout: it never waited
        failed = await rec.wait_for(Event.MOVIE_FAILED, timeout=20)
        assert failed.payload["reason"] == "no_frames"
        failures = rec.of(Event.CAPTURE_FAILED)
        assert failures and all(f.payload["url"] == cam.url for f in failures)
        assert {"error": "HTTP 500", "garbage": "not a JPEG", "slow": "no snapshot within 0.5 s"
                }[mode] in failures[0].payload["error"]
        keys_ok(rec.seen)


def positions(commands: list[str]) -> list[tuple]:
    """(x, y, z, e, f) before each command, as the firmware reads them (modes included)."""
    pos = {"X": None, "Y": None, "Z": None, "E": 0.0, "F": None}
    rel = rel_e = False
    out = []
    for c in commands:
        out.append(tuple(pos[k] for k in "XYZEF"))
        word = c.split()[0]
        if word == "G90":
            rel = False
        elif word == "G91":
            rel = True
        elif word == "M82":
            rel_e = False
        elif word == "M83":
            rel_e = True
        elif word == "G92":
            pos["E"] = param_value(c, "E") or 0.0
        elif word in ("G0", "G1"):
            for k in "XYZEF":
                v = param_value(c, k)
                if v is None:
                    continue
                relative = (rel or rel_e) if k == "E" else rel and k != "F"
                pos[k] = round((pos[k] or 0.0) + v, 5) if relative else v
    return out


def extruded(commands: list[str]) -> float:
    """Net filament pushed (mm), whatever the E modes."""
    before = positions([*commands, "M400"])
    total = 0.0
    for i, c in enumerate(commands):
        if c.split()[0] in ("G0", "G1") and param_value(c, "E") is not None:
            total += before[i + 1][3] - before[i][3]
    return round(total, 5)


def parked(command: str) -> bool:
    """The park script's travel to X5 Y190."""
    return (command.startswith("G1 ") and param_value(command, "X") == 5
            and param_value(command, "Y") == 190)


async def test_steady_frames_park_between_layers_and_resume_exactly(tmp_path, jpegs):
    extra = ("  park:\n    enabled: true\n    x: 5\n    y: 190\nvirtual:\n  marlin:\n"
             "    enabled: true\n    move_time: 0.005\n")
    async with webcam(jpegs) as cam, serve_for_test(tmp_path, config(cam.url, extra=extra),
                                                    ) as server:
        seen_at_request: list[list[str]] = []
        cam.on_request = lambda: seen_at_request.append(
            list(server.service.session.virtual.firmware.accepted))
        rec = server.events(TL_EVENTS)
        text = layered(3)
        expected = await print_file(server, tmp_path, text)
        await rec.wait_for(Event.MOVIE_DONE, timeout=30)
        accepted = [c for c in server.service.session.virtual.firmware.accepted
                    if c not in ("M105", "M155 S2")]
        # one frame per layer, each taken once the printer had acknowledged the park's M400
        assert len(seen_at_request) == 3
        for then in seen_at_request:
            assert then[-1] == "M400"
            assert parked(then[-2]), " | ".join(then[-12:])
        # each park block sits before a layer's first extruding move, and the head is back at
        # the exact position (and E, and feed rate) before every file line
        mine = positions(accepted)
        theirs = positions(expected)
        j, extra = 0, []
        for i, c in enumerate(accepted):
            if j < len(expected) and c == expected[j]:
                assert mine[i] == theirs[j], (c, mine[i], theirs[j])
                j += 1
            elif 0 < j < len(expected):
                extra.append(c)
        assert j == len(expected)   # every file line, once, in order
        words = [c.split()[0] for c in extra]   # three park blocks, nothing else
        assert words == ["M83", "G1", "G91", "G1", "G90", "G1", "M400",      # park
                         "G90", "G1", "G1", "M83", "G1", "M82", "G1",   # restore
                         ] * 3, " | ".join(extra)
        assert extruded(accepted) == extruded(expected) == 4.5
        parks = [i for i, c in enumerate(accepted) if parked(c)]
        assert len(parks) == 3
        first_extrusions = [accepted.index(c) for c in expected
                            if c.startswith("G1 X15 ")]
        for park, first in zip(parks, first_extrusions, strict=True):
            assert park < first   # the park block comes before the layer's first extrusion


async def test_capture_hooks_run_as_stages_around_each_frame(tmp_path, jpegs):
    timelapse_handlers.CALLS.clear()
    extra = ("pipeline:\n  timelapse.capture.pre:\n    - handler: timelapse_handlers:capture_pre\n"
             "  timelapse.capture.post:\n    - handler: timelapse_handlers:capture_post\n"
             "  timelapse.extensions:\n    - handler: timelapse_handlers:extensions\n")
    async with webcam(jpegs) as cam, serve_for_test(tmp_path, config(cam.url) + extra) as server:
        rec = server.events(TL_EVENTS)
        await print_file(server, tmp_path, layered(2))
        await rec.wait_for(Event.MOVIE_DONE, timeout=30)
        frames = [e.payload["file"] for e in rec.of(Event.CAPTURE_START)]
        assert len(frames) == 2
        around = [c for f in frames for c in (("pre", f), ("post", f, True))]
        assert around == timelapse_handlers.CALLS
        # timelapse.extensions: an .apng movie is listed too
        folder = os.path.dirname(rec.of(Event.MOVIE_DONE)[0].payload["movie"])
        with open(os.path.join(folder, "other.apng"), "wb") as f:
            f.write(b"x")
        listed = {m["name"] for m in (await server.client.get("/api/timelapse")).json()["files"]}
        assert "other.apng" in listed


async def test_unrendered_sets_render_and_delete_through_the_api_and_post_sets_the_config(
        tmp_path, jpegs):
    async with webcam(jpegs) as cam, serve_for_test(
            tmp_path, config(cam.url, extra="  render_after_print: false\n")) as server:
        rec = server.events(TL_EVENTS)
        await print_file(server, tmp_path, layered(2))
        with trio.fail_after(10):
            while True:
                sets = (await server.client.get("/api/timelapse?unrendered=true")).json()[
                    "unrendered"]
                if sets and not sets[0]["recording"]:
                    break
                await trio.sleep(0.02)
        (one,) = sets
        assert one["frames"] == 2 and one["rendering"] is False
        c = server.client
        assert (await c.post(f"/api/timelapse/unrendered/{one['name']}",
                             json={"command": "render"})).status_code == 204
        done = await rec.wait_for(Event.MOVIE_DONE, timeout=30)
        assert int(probe(done.payload["movie"])["nb_read_frames"]) == 2
        assert (await c.delete(f"/api/timelapse/unrendered/{one['name']}")).status_code == 404
        assert (await c.get("/api/timelapse?unrendered=true")).json()["unrendered"] == []
        # POST sets the config until a reload; a bad value is a 400 naming it
        got = (await c.post("/api/timelapse", json={"type": "timed", "fps": 5,
                                                    "interval": 2})).json()
        assert got["config"]["type"] == "timed" and got["config"]["fps"] == 5
        bad = await c.post("/api/timelapse", json={"fps": 500})
        assert bad.status_code == 400 and "fps" in bad.json()["error"]
        settings = (await c.get("/api/settings")).json()["webcam"]
        assert settings["snapshotUrl"] == cam.url and settings["webcamEnabled"] is True
        assert settings["ffmpegPath"] == "ffmpeg" and settings["timelapseEnabled"] is True
