"""LocalStorage and its metadata without HTTP: names, paths that try to leave the folder,
listing, folders, move/copy/delete, and uploads renamed in atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import load_yaml

from pipeline.files.index import MetadataStore, stamp_of, type_path_of
from pipeline.files.storage import (
    DiskFile,
    EntryExists,
    LocalStorage,
    NoSuchEntry,
    StorageError,
    UnsupportedType,
)
from pipeline.hooks.registry import build_pipeline
from stages import BUILTIN_STAGES

GCODE = b"G28\nG1 X10 Y10 E1 F600\n"


def make(tmp_path, yaml: str = "") -> LocalStorage:
    config = load_yaml(yaml)
    return LocalStorage(str(tmp_path / "files"), build_pipeline(config.pipeline, BUILTIN_STAGES))


def put(storage: LocalStorage, rel: str, data: bytes = GCODE) -> str:
    full = os.path.join(storage.root, *rel.split("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(data)
    return full


def temp_in(storage: LocalStorage, data: bytes = GCODE) -> str:
    path = os.path.join(storage.root, ".upload-test")
    with open(path, "wb") as f:
        f.write(data)
    return path


def names(entries) -> list[str]:
    return [e.name for e in entries]


def leftovers(storage: LocalStorage) -> list[str]:
    return [n for _d, dirs, files in os.walk(storage.root) for n in dirs + files
            if n.startswith((".upload-", ".deleting-"))]


# ---- names and paths ------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "clean"), [
    ("cube.gcode", "cube.gcode"),
    ("../../etc/cube.gcode", "cube.gcode"),
    ("C:\\Users\\me\\cube.gcode", "cube.gcode"),
    ("my cube (v2).gcode", "my cube (v2).gcode"),
    ("we;ird$|name.gcode", "we_ird__name.gcode"),
    (".hidden.gcode", "hidden.gcode"),
    ("trailing. ", "trailing"),
])
def test_sanitize(raw, clean):
    assert LocalStorage.sanitize(raw) == clean


@pytest.mark.parametrize("raw", ["", "...", "a/", " . "])
def test_sanitize_refuses_empty_names(raw):
    with pytest.raises(StorageError, match="empty"):
        LocalStorage.sanitize(raw)


@pytest.mark.parametrize("path", ["..", "../x.gcode", "a/../../x.gcode", "a\\..\\..\\x.gcode",
                                  "a/./../b/../../x", "x\0.gcode"])
def test_paths_with_dot_dot_or_nul_are_refused(tmp_path, path):
    storage = make(tmp_path)
    for call in (storage.resolve, storage.locate, storage.entry, storage.remove_file,
                 lambda p: storage.add_folder(p + "/dir")):
        with pytest.raises(StorageError):
            call(path)
    with pytest.raises(StorageError):
        storage.add_upload(path, temp_in(storage))
    assert os.listdir(tmp_path) == ["files"]  # nothing written next to the storage folder


def test_absolute_paths_stay_inside_the_storage(tmp_path):
    storage = make(tmp_path)
    assert storage.resolve("/etc/passwd") == os.path.join(storage.root, "etc", "passwd")
    with pytest.raises(NoSuchEntry):
        storage.entry("/etc/passwd")
    stored = storage.add_upload("/etc/cube.gcode", temp_in(storage))
    assert stored.path == "etc/cube.gcode"
    assert os.path.exists(os.path.join(storage.root, "etc", "cube.gcode"))


def test_symlinks_pointing_out_are_refused_and_never_listed(tmp_path):
    storage = make(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.gcode").write_bytes(b"M112\n")
    os.symlink(outside, os.path.join(storage.root, "out"))
    os.symlink(outside / "secret.gcode", os.path.join(storage.root, "secret.gcode"))
    for path in ("out", "out/secret.gcode", "secret.gcode"):
        with pytest.raises(StorageError, match="outside"):
            storage.entry(path)
    with pytest.raises(StorageError, match="outside"):
        storage.add_upload("out/evil.gcode", temp_in(storage))
    with pytest.raises(StorageError, match="outside"):
        storage.remove_file("secret.gcode")
    with pytest.raises(StorageError, match="outside"):
        storage.move("secret.gcode", "mine.gcode")
    with pytest.raises(StorageError, match="outside"):
        storage.add_folder("out/sub")
    put(storage, "a.gcode")
    with pytest.raises(StorageError, match="outside"):
        storage.copy("a.gcode", "out/a.gcode")
    assert storage.listing(recursive=True) and names(storage.listing()) == ["a.gcode"]
    assert sorted(os.listdir(outside)) == ["secret.gcode"]
    assert (outside / "secret.gcode").read_bytes() == b"M112\n"


def test_a_symlink_inside_is_followed_but_deleting_it_deletes_only_the_link(tmp_path):
    storage = make(tmp_path)
    put(storage, "real.gcode")
    os.symlink("real.gcode", os.path.join(storage.root, "alias.gcode"))
    assert storage.entry("alias.gcode").size == len(GCODE)
    storage.remove_file("alias.gcode")
    assert names(storage.listing()) == ["real.gcode"]


def test_dot_names_are_not_addressable(tmp_path):
    storage = make(tmp_path)
    put(storage, ".metadata.json", b"{}")
    for path in (".metadata.json", ".upload-x", "sub/.x.gcode"):
        with pytest.raises(NoSuchEntry, match="reserved"):
            storage.entry(path)
    with pytest.raises(NoSuchEntry):
        storage.add_upload(".hidden/x.gcode", temp_in(storage))


# ---- listing ----------------------------------------------------------------------------------
def test_listing_hides_dot_files_and_unaccepted_types(tmp_path):
    storage = make(tmp_path)
    put(storage, "b.gcode")
    put(storage, "a.gco", b"G28\n")
    put(storage, "notes.txt", b"hello")
    put(storage, ".upload-abc123", b"partial")
    put(storage, ".metadata.json", b"{}")
    put(storage, "sub/deep/c.g", b"G1\n")
    put(storage, "sub/x.gcode")
    top = storage.listing()
    assert names(top) == ["a.gco", "b.gcode", "sub"]
    a, _b, sub = top
    assert a.type_path == ("machinecode", "gcode") and a.type == "machinecode"
    assert a.size == 4 and isinstance(a.date, int) and a.children is None
    assert sub.is_folder and sub.type_path == ("folder",)
    assert sub.size == len(GCODE) + 3 and sub.children is None  # not recursive
    deep = storage.listing(recursive=True)[2]
    assert [e.path for e in deep.walk()] == ["sub", "sub/deep", "sub/deep/c.g", "sub/x.gcode"]
    assert names(storage.listing("sub")) == ["deep", "x.gcode"]
    with pytest.raises(StorageError, match="not a folder"):
        storage.listing("sub/x.gcode")
    with pytest.raises(NoSuchEntry):
        storage.entry("notes.txt")
    with pytest.raises(NoSuchEntry):
        storage.entry("missing.gcode")


def test_extension_tree_types(tmp_path):
    tree = {"machinecode": {"gcode": ["gcode", "gco"], "x3g": ["x3g"]}, "model": {"stl": ["stl"]}}
    assert type_path_of(tree, "GCO") == ("machinecode", "gcode")
    assert type_path_of(tree, "x3g") == ("machinecode", "x3g")
    assert type_path_of(tree, "obj") is None
    storage = make(tmp_path, "pipeline:\n  filemanager.extension_tree:\n"
                             "    - handler: phase_handlers:x3g\n")
    put(storage, "a.x3g", b"\x00\x01")
    assert storage.entry("a.x3g").type_path == ("machinecode", "x3g")


# ---- folders, delete, move, copy ------------------------------------------------------------
def test_folders_are_created_and_removed(tmp_path):
    storage = make(tmp_path)
    folder = storage.add_folder("new folder")
    assert (folder.path, folder.is_folder, folder.size) == ("new folder", True, 0)
    assert storage.add_folder("new folder/in;ner").path == "new folder/in_ner"
    with pytest.raises(EntryExists):
        storage.add_folder("new folder")
    with pytest.raises(NoSuchEntry):
        storage.add_folder("missing/child")
    assert storage.add_folder("made/on/demand", parents=True).path == "made/on/demand"
    put(storage, "new folder/a.gcode")
    with pytest.raises(EntryExists, match="not empty"):
        storage.remove_folder("new folder", recursive=False)
    assert storage.remove_folder("made/on/demand", recursive=False).path == "made/on/demand"
    gone = storage.remove_folder("new folder")
    assert [e.path for e in gone.walk()] == ["new folder", "new folder/a.gcode",
                                             "new folder/in_ner"]
    assert names(storage.listing()) == ["made"] and not leftovers(storage)
    with pytest.raises(StorageError, match="itself"):
        storage.remove_folder("")
    with pytest.raises(StorageError, match="is not a folder"):
        put(storage, "f.gcode") and storage.remove_folder("f.gcode")


def test_remove_file(tmp_path):
    storage = make(tmp_path)
    put(storage, "sub/a.gcode")
    assert storage.remove_file("sub/a.gcode").path == "sub/a.gcode"
    assert storage.listing("sub") == []
    with pytest.raises(NoSuchEntry):
        storage.remove_file("sub/a.gcode")
    with pytest.raises(StorageError, match="is a folder"):
        storage.remove_file("sub")


def test_move_files_and_folders(tmp_path):
    storage = make(tmp_path)
    put(storage, "a.gcode", b"A\n")
    put(storage, "b.gcode", b"B\n")
    put(storage, "dir/c.gcode", b"C\n")
    storage.add_folder("other")
    source, new = storage.move("a.gcode", "other/renamed.gco")
    assert (source.path, new.path, new.size) == ("a.gcode", "other/renamed.gco", 2)
    with pytest.raises(EntryExists):
        storage.move("b.gcode", "other/renamed.gco")
    assert Path(storage.root, "other", "renamed.gco").read_bytes() == b"A\n"
    assert Path(storage.root, "b.gcode").read_bytes() == b"B\n"
    with pytest.raises(EntryExists):
        storage.move("dir", "other")  # never onto a folder, even an empty one
    with pytest.raises(NoSuchEntry):
        storage.move("b.gcode", "missing/b.gcode")
    with pytest.raises(UnsupportedType):
        storage.move("b.gcode", "b.txt")
    with pytest.raises(StorageError, match="inside itself"):
        storage.move("dir", "dir/inner")
    _, moved = storage.move("dir", "other/dir")
    assert [e.path for e in moved.walk()] == ["other/dir"]
    assert names(storage.listing("other/dir")) == ["c.gcode"]
    assert names(storage.listing()) == ["b.gcode", "other"] and not leftovers(storage)


def test_copy_files_and_folders_without_following_links(tmp_path):
    storage = make(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.gcode").write_bytes(b"M112\n")
    put(storage, "dir/a.gcode", b"A\n")
    put(storage, "dir/.upload-junk", b"x")
    os.symlink(outside, os.path.join(storage.root, "dir", "link"))
    _, new = storage.copy("dir/a.gcode", "a copy.gcode")
    assert new.path == "a copy.gcode" and new.size == 2
    assert storage.entry("dir/a.gcode").size == 2  # the source stays
    with pytest.raises(EntryExists):
        storage.copy("dir/a.gcode", "a copy.gcode")
    _, tree = storage.copy("dir", "dir2")
    assert tree.is_folder and names(storage.listing("dir2")) == ["a.gcode"]
    copied_link = os.path.join(storage.root, "dir2", "link")
    assert os.path.islink(copied_link)  # copied as a link, its target never read
    assert not os.path.exists(os.path.join(storage.root, "dir2", ".upload-junk"))
    with pytest.raises(StorageError, match="inside itself"):
        storage.copy("dir", "dir/again")
    os.unlink(os.path.join(storage.root, "dir", ".upload-junk"))
    assert not leftovers(storage)


# ---- adding files atomically ------------------------------------------------------------------
def test_an_upload_is_renamed_in_not_copied(tmp_path):
    storage = make(tmp_path)
    temp = temp_in(storage)
    inode = os.stat(temp).st_ino
    stored = storage.add_upload("sub/cube.gcode", temp, allow_overwrite=False)
    assert (stored.name, stored.path, stored.size) == ("cube.gcode", "sub/cube.gcode", len(GCODE))
    final = os.path.join(storage.root, "sub", "cube.gcode")
    assert os.stat(final).st_ino == inode and not os.path.exists(temp)
    with pytest.raises(EntryExists):
        storage.add_upload("sub/cube.gcode", temp_in(storage, b"other"))
    assert not leftovers(storage)  # the refused temp file was removed too
    storage.add_upload("sub/cube.gcode", temp_in(storage, b"G0\n"), allow_overwrite=True)
    assert Path(final).read_bytes() == b"G0\n"


def test_an_upload_a_preprocessor_rewrites_is_written_through_it(tmp_path):
    storage = make(tmp_path, "pipeline:\n  filemanager.preprocessor:\n"
                             "    - handler: phase_handlers:strip_all_comments\n")
    temp = temp_in(storage, b"G28 ; home\n; note\nG1 X1\n")
    stored = storage.add_upload("cube_strip.gcode", temp)
    assert Path(storage.root, "cube_strip.gcode").read_bytes() == b"G28\nG1 X1\n"
    assert stored.size == 10 and not os.path.exists(temp) and not leftovers(storage)


def test_an_unaccepted_upload_is_refused_and_its_temp_file_removed(tmp_path):
    storage = make(tmp_path)
    temp = temp_in(storage)
    with pytest.raises(UnsupportedType, match="not accepted"):
        storage.add_upload("model.stl", temp)
    assert not os.path.exists(temp) and storage.listing() == []


def test_uploading_below_a_file_is_refused(tmp_path):
    storage = make(tmp_path)
    put(storage, "a.gcode")
    with pytest.raises(StorageError, match="not a folder"):
        storage.add_upload("a.gcode/b.gcode", temp_in(storage))
    assert not leftovers(storage)


class HalfWriter:
    """A file object whose save() writes half the file, then fails (a full disk)."""

    filename = "x.gcode"

    def stream(self):
        raise AssertionError("not used")

    def save(self, path):
        with open(path, "wb") as f:
            f.write(b"G1 X")
        raise OSError(28, "No space left on device")


def test_no_partial_file_is_ever_visible_under_the_final_name(tmp_path):
    storage = make(tmp_path)
    with pytest.raises(OSError, match="No space"):
        storage.add_file("new.gcode", HalfWriter())
    assert not os.path.exists(os.path.join(storage.root, "new.gcode"))
    put(storage, "old.gcode", b"G28\n")
    with pytest.raises(OSError, match="No space"):
        storage.add_file("old.gcode", HalfWriter(), allow_overwrite=True)
    assert Path(storage.root, "old.gcode").read_bytes() == b"G28\n"
    assert not leftovers(storage)
    src = tmp_path / "src.gcode"
    src.write_bytes(GCODE)
    assert storage.add_file("new.gcode", DiskFile("new.gcode", str(src))).size == len(GCODE)


# ---- metadata --------------------------------------------------------------------------------
def test_metadata_is_only_valid_for_the_content_it_describes(tmp_path):
    storage = make(tmp_path)
    full = put(storage, "a.gcode")
    meta = MetadataStore(storage.root)
    stamp = stamp_of(os.stat(full))
    meta.update("a.gcode", stamp, analysis={"lines": 2})
    assert MetadataStore(storage.root).get("a.gcode", stamp) == {"analysis": {"lines": 2},
                                                                  "stamp": stamp}
    put(storage, "a.gcode", b"G0\n")
    assert meta.get("a.gcode", stamp_of(os.stat(full))) == {}
    assert names(storage.listing()) == ["a.gcode"]  # .metadata.json is not listed


def test_metadata_follows_moves_and_copies(tmp_path):
    storage = make(tmp_path)
    meta = MetadataStore(storage.root)
    for rel in ("dir/a.gcode", "dir/b.gcode"):
        meta.update(rel, stamp_of(os.stat(put(storage, rel))), analysis={"p": rel})

    def stat_of(rel):
        try:
            return os.stat(storage.locate(rel)[1])
        except OSError:
            return None
    storage.copy("dir", "copy")
    meta.carry("dir", "copy", stat_of, keep_source=True)
    storage.move("dir", "moved")
    meta.carry("dir", "moved", stat_of, keep_source=False)
    for rel in ("copy/a.gcode", "moved/a.gcode", "moved/b.gcode"):
        assert meta.get(rel, storage.entry(rel).stamp)["analysis"]["p"].endswith(rel[-7:])
    assert meta.get("dir/a.gcode", [len(GCODE), 0]) == {}
    meta.forget("moved")
    assert meta.get("moved/a.gcode", storage.entry("moved/a.gcode").stamp) == {}
    assert meta.get("copy/a.gcode", storage.entry("copy/a.gcode").stamp)


def test_an_unreadable_metadata_file_starts_empty(tmp_path):
    storage = make(tmp_path)
    put(storage, ".metadata.json", b"{not json")
    meta = MetadataStore(storage.root)
    assert meta.get("a.gcode", [1, 1]) == {}
    meta.update("a.gcode", [1, 1], display="A")
    assert MetadataStore(storage.root).get("a.gcode", [1, 1])["display"] == "A"
