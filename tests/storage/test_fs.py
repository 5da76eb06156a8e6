"""The filesystem interface: both implementations agree; the in-memory one crashes honestly."""

from __future__ import annotations

import random

import pytest

from impl.runtime.fs import MemoryFileSystem, RealFileSystem


@pytest.fixture(params=["memory", "real"])
def fs_and_root(request, tmp_path):
    if request.param == "memory":
        yield MemoryFileSystem(), "/data"
    else:
        fs = RealFileSystem()
        yield fs, str(tmp_path / "data")
        fs.close()


def test_basic_operations_agree(fs_and_root):
    fs, root = fs_and_root
    fs.mkdir(root + "/a/b")
    assert fs.exists(root + "/a/b") and not fs.exists(root + "/a/c")
    path = root + "/a/b/f.log"
    fs.append(path, b"hello ")
    fs.append(path, b"world")
    assert fs.size(path) == 11
    assert fs.read(path, 6, 100) == b"world"
    fs.truncate(path, 5)
    assert fs.read(path, 0, 100) == b"hello"
    fs.truncate(path, 50)
    assert fs.size(path) == 5
    fs.fsync(path)
    fs.rename(path, root + "/a/b/g.log")
    fs.fsync_dir(root + "/a/b")
    assert fs.list_dir(root + "/a/b") == ["g.log"]
    fs.remove(root + "/a/b/g.log")
    assert fs.list_dir(root + "/a/b") == []
    with pytest.raises(FileNotFoundError):
        fs.read(root + "/a/b/g.log", 0, 1)


def _durable_file(fs: MemoryFileSystem, path: str, data: bytes) -> None:
    fs.mkdir("/d")
    fs.fsync_dir("/")
    fs.append(path, data)
    fs.fsync(path)
    fs.fsync_dir("/d")


def test_crash_keeps_only_fsynced_bytes():
    fs = MemoryFileSystem()
    _durable_file(fs, "/d/f", b"synced")
    fs.append("/d/f", b"-lost")
    fs.crash()
    assert fs.read("/d/f", 0, 100) == b"synced"


def test_crash_forgets_names_not_fsynced_in_their_directory():
    fs = MemoryFileSystem()
    _durable_file(fs, "/d/kept", b"x")
    fs.append("/d/new", b"data")
    fs.fsync("/d/new")
    fs.remove("/d/kept")
    fs.crash()
    assert fs.list_dir("/d") == ["kept"]


def test_crash_brings_back_bytes_of_an_unsynced_truncation():
    fs = MemoryFileSystem()
    _durable_file(fs, "/d/f", b"0123456789")
    fs.truncate("/d/f", 3)
    fs.append("/d/f", b"abc")
    fs.crash()
    assert fs.read("/d/f", 0, 100) == b"0123456789"


def test_rename_is_durable_only_after_directory_fsync():
    fs = MemoryFileSystem()
    _durable_file(fs, "/d/old", b"x")
    fs.rename("/d/old", "/d/new")
    fs.crash()
    assert fs.list_dir("/d") == ["old"]
    fs.rename("/d/old", "/d/new")
    fs.fsync_dir("/d")
    fs.crash()
    assert fs.list_dir("/d") == ["new"]


def test_directory_not_made_durable_vanishes_with_its_files():
    fs = MemoryFileSystem()
    fs.mkdir("/x/y")
    fs.append("/x/y/f", b"a")
    fs.fsync("/x/y/f")
    fs.fsync_dir("/x/y")
    fs.crash()
    assert not fs.exists("/x")


@pytest.mark.parametrize("seed", range(20))
def test_torn_write_keeps_a_prefix_of_the_last_write(seed):
    fs = MemoryFileSystem()
    _durable_file(fs, "/d/f", b"base")
    fs.append("/d/f", b"0123456789")
    fs.crash(tear_last_write=True, rng=random.Random(seed))
    content = fs.read("/d/f", 0, 100)
    assert (b"base0123456789").startswith(content) and content.startswith(b"base"), seed


def test_torn_writes_cover_every_prefix_length():
    lengths = set()
    for seed in range(200):
        fs = MemoryFileSystem()
        _durable_file(fs, "/d/f", b"")
        fs.append("/d/f", b"abc")
        fs.crash(tear_last_write=True, rng=random.Random(seed))
        lengths.add(fs.size("/d/f"))
    assert lengths == {0, 1, 2, 3}


def test_corrupt_is_durable():
    fs = MemoryFileSystem()
    _durable_file(fs, "/d/f", b"abcdef")
    fs.corrupt("/d/f", 2, b"XY")
    fs.crash()
    assert fs.read("/d/f", 0, 6) == b"abXYef"
