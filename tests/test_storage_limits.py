"""The storage's limits without HTTP (files/names.py, files/index.py's scan): name and path
lengths, folder paths sanitised as names are, symlink loops and link fan-outs that listing must
get through, and the sweep of stale temp names."""

from __future__ import annotations

import os

import pytest

from pipeline.files.index import scan
from pipeline.files.names import (
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    StorageError,
    is_stale_temp,
    normalize,
    remove_stale_temps,
    sanitize_path,
)

NAME = "a" * MAX_NAME_BYTES


@pytest.mark.parametrize(("path", "clean"), [
    (NAME, NAME),
    ("é" * (MAX_NAME_BYTES // 2), "é" * (MAX_NAME_BYTES // 2)),   # 254 bytes
    ("/".join([NAME] * 4), "/".join([NAME] * 4)),                 # 1023 bytes
    ("/" + "/".join([NAME] * 4) + "//./", "/".join([NAME] * 4)),  # counted once normalised
])
def test_names_and_paths_within_the_limits(path, clean):
    assert normalize(path) == clean


@pytest.mark.parametrize(("path", "message"), [
    (NAME + "a", (f"'{'a' * 60}'... (256 characters): the name is 256 bytes long; file and "
                 f"folder names are limited to {MAX_NAME_BYTES} bytes (UTF-8)")),
    ("d/" + "é" * 128, "the name is 256 bytes long"),
    ("/".join([NAME] * 4) + "/b", (f"the path is 1025 bytes long; storage paths are limited to "
                                  f"{MAX_PATH_BYTES} bytes")),
    ("a/" * 5000, "the path is 9999 bytes long"),
    ("x\ud800.gcode", "'x\\ud800.gcode': not valid Unicode text"),
])
def test_names_and_paths_over_the_limits_are_refused(path, message):
    with pytest.raises(StorageError) as info:
        normalize(path)
    assert message in str(info.value)
    assert len(str(info.value)) < 250


@pytest.mark.parametrize(("path", "clean"), [
    ("", ""),
    ("/", ""),
    ("a b/c;d", "a b/c_d"),
    ("nl\nM104 S250\n", "nl_M104 S250_"),
    ("bel\x07/tab\tcr\r", "bel_/tab_cr_"),
    (".hidden/x", "hidden/x"),
    ("\\win\\path", "win/path"),
])
def test_sanitize_path_sanitises_every_folder_name(path, clean):
    assert sanitize_path(path) == clean


@pytest.mark.parametrize("path", ["a/../b", "a/\0", "ok/...", NAME + "x"])
def test_sanitize_path_refuses_what_names_refuse(path):
    with pytest.raises(StorageError):
        sanitize_path(path)


def listed(entry) -> list[str]:
    return [e.path for e in entry.walk()]


def test_symlink_loops_are_skipped_and_reported(tmp_path):
    root = str(tmp_path)
    os.makedirs(tmp_path / "real" / "deep")
    (tmp_path / "real" / "deep" / "x.gcode").write_bytes(b"G28\n")
    os.symlink(".", tmp_path / "a")
    os.symlink("..", tmp_path / "real" / "b")
    os.symlink("../..", tmp_path / "real" / "deep" / "c")
    os.symlink("self", tmp_path / "self")
    seen: list[tuple[str, str]] = []

    def skipped(rel: str, why: str) -> None:
        seen.append((rel, why))

    def gcode(name: str) -> tuple[str, ...] | None:
        return ("machinecode", "gcode") if name.endswith(".gcode") else None

    top = scan(root, root, "", gcode, depth=-1, skipped=skipped)
    assert listed(top) == ["", "real", "real/deep", "real/deep/x.gcode"]
    assert sorted(seen) == [
        ("a", "a symlink to a folder above it (a loop)"),
        ("real/b", "a symlink to a folder above it (a loop)"),
        ("real/deep/c", "a symlink to a folder above it (a loop)"),
        ("self", "a loop of symlinks"),
    ]
    # entered through a loop, the walk still ends
    inner = scan(root, os.path.join(root, "real", "b", "real"), "real/b/real", gcode, depth=-1)
    assert listed(inner) == ["real/b/real", "real/b/real/deep", "real/b/real/deep/x.gcode"]


def test_a_fan_out_of_links_lists_each_folder_through_one_link(tmp_path):
    # ten links to the next level, eight levels: 10**8 paths if every link were followed
    root = str(tmp_path)
    for level in range(8):
        os.makedirs(tmp_path / f"d{level}")
        if level:
            for i in range(10):
                os.symlink(f"../d{level}", tmp_path / f"d{level - 1}" / f"l{i}")
    (tmp_path / "d7" / "x.gcode").write_bytes(b"G28\n")
    seen: list[str] = []
    top = scan(root, root, "", lambda n: ("machinecode", "gcode"), depth=-1,
               skipped=lambda rel, why: seen.append(why))
    paths = listed(top)
    assert len(paths) < 100
    assert "d7/x.gcode" in paths and "d0/l0/l0/l0/l0/l0/l0/l0/x.gcode" in paths
    assert set(seen) == {"a symlink to a folder listed already through another link"}


def test_stale_temp_names():
    for name in (".upload-abcd1234", ".upload-_z09y8x7", ".upload-meta-abcdefgh",
                 ".deleting-a1b2c3d4"):
        assert is_stale_temp(name), name
    for name in (".upload-abc", ".upload-ABCD1234", ".upload-abcd12345", "upload-abcd1234",
                 ".upload-abcd1234.gcode", ".metadata.json", ".deleting-", "x.upload-abcd1234"):
        assert not is_stale_temp(name), name


def test_remove_stale_temps_reports_what_it_removed(tmp_path):
    (tmp_path / "sub" / ".deleting-a1b2c3d4" / "d").mkdir(parents=True)
    (tmp_path / "sub" / ".deleting-a1b2c3d4" / "d" / ".upload-abcd1234").write_bytes(b"x")
    (tmp_path / ".upload-abcd1234").write_bytes(b"x")
    (tmp_path / "cube.gcode").write_bytes(b"G28\n")
    os.symlink("cube.gcode", tmp_path / ".upload-linkname")  # a link with a temp name: unlinked
    assert sorted(remove_stale_temps(str(tmp_path))) == [
        ".upload-abcd1234", ".upload-linkname", "sub/.deleting-a1b2c3d4"]
    assert sorted(os.listdir(tmp_path)) == ["cube.gcode", "sub"]
    assert os.listdir(tmp_path / "sub") == []
