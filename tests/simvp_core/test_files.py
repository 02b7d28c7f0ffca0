"""simvp_core.files and simvp_core.atomic: every file read is refused before it can block (a FIFO,
a device, a folder), every failed write is one line that keeps what was there (a real full disk, a
real read-only mount), and no output replaces an input or a file of another kind without --overwrite."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from simvp_core.atomic import atomic_file, atomic_write
from simvp_core.files import FileError, check_output, check_regular, make_folder, open_regular, read_bytes


def nodes(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Every kind of path a read must refuse, and what its line says."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    return {"fifo": (tmp_path / "fifo", "a FIFO (named pipe), not a regular file"),
            "device": (Path("/dev/zero"), "a character device, not a regular file"),
            "folder": (tmp_path / "folder", "a folder, not a regular file"),
            "missing": (tmp_path / "missing", "no such file")}


def test_a_non_regular_file_is_refused_before_anything_blocks_on_it(tmp_path: Path) -> None:
    refused = {}
    for name, (path, words) in nodes(tmp_path).items():
        for read in (open_regular, check_regular, lambda p: read_bytes(p, 100)):
            worker = threading.Thread(target=lambda k=(name, read), r=read, p=path: refused.setdefault(
                k, _error(r, p)), daemon=True)
            worker.start()
            worker.join(timeout=10)  # a FIFO opened for reading would block here for ever
            assert not worker.is_alive(), f"{name}: still blocked"
            message = refused[(name, read)]
            assert words in message and str(path.name) in message and "\n" not in message, message
    (tmp_path / "ok").write_bytes(b"abc")
    with open_regular(tmp_path / "ok") as f:
        assert f.read() == b"abc"
    assert read_bytes(tmp_path / "ok", 3) == b"abc"
    with pytest.raises(FileError, match="over 2 bytes, refused unread"):
        read_bytes(tmp_path / "ok", 2)


def _error(read, path: Path) -> str:
    try:
        read(path)
    except FileError as e:
        assert isinstance(e, ValueError) and isinstance(e, OSError)  # the CLIs refuse it: exit 2
        return str(e)
    return "read without an error"


def test_a_write_on_a_full_disk_is_one_line_and_keeps_the_old_file(small_disk: Path) -> None:
    target = small_disk / "kept.json"
    atomic_write(target, "old\n")
    try:
        with pytest.raises(FileError) as info:
            atomic_write(target, b"x" * 1_000_000)  # four times the disk
        assert info.value.errno == errno.ENOSPC
        assert str(info.value) == (f"cannot write {target}: no space left on the device; free some space "
                                   "(what was there is kept)")
        assert target.read_text() == "old\n" and sorted(p.name for p in small_disk.iterdir()) == ["kept.json"]
    finally:
        target.unlink()


def test_torch_save_into_a_full_disk_reads_as_a_full_disk(small_disk: Path) -> None:
    import torch

    target = small_disk / "checkpoint.pt"
    try:
        with pytest.raises(FileError, match="no space left on the device"), atomic_file(target) as f:
            torch.save({"w": torch.zeros(200_000)}, f)  # torch turns the OSError into a RuntimeError
        assert list(small_disk.iterdir()) == []
    finally:
        target.unlink(missing_ok=True)


def test_a_write_on_a_read_only_disk_or_under_a_file_is_one_line(read_only_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileError, match="read-only file system; pass a writable location") as info:
        atomic_write(read_only_dir / "kept.txt", "new")
    assert info.value.errno == errno.EROFS and (read_only_dir / "kept.txt").read_text() == "there before\n"
    with pytest.raises(FileError, match="read-only file system"):
        make_folder(read_only_dir / "sub" / "deeper")
    (tmp_path / "afile").write_text("a file")
    for path in (tmp_path / "afile" / "x.json", tmp_path / "afile" / "sub" / "x.json"):
        with pytest.raises(FileError, match="a part of the path is a file, not a folder; pass a path under a folder"):
            atomic_write(path, "x")
    with pytest.raises(FileError, match="a name in the path is too long"):
        atomic_write(tmp_path / ("n" * 300) / "x.json", "x")
    assert (tmp_path / "afile").read_text() == "a file"


def test_no_output_replaces_an_input_or_a_file_of_another_kind_without_overwrite(tmp_path: Path) -> None:
    source, linked = tmp_path / "in.pt", tmp_path / "hard_link.pt"
    source.write_text("input")
    os.link(source, linked)
    other, same_kind = tmp_path / "other.txt", tmp_path / "out.ckpt"
    other.write_text("notes")
    same_kind.write_text("ckpt")
    kind_of = {other: "a text file", same_kind: "an OpenSTL checkpoint"}.get
    for out, words in ((source, "the output is the input"), (linked, "the output is the input"),
                       (other, "exists and holds a text file, not an OpenSTL checkpoint")):
        with pytest.raises(FileError, match=words) as info:
            check_output(out, [source], "an OpenSTL checkpoint", kind_of)
        assert "pass --overwrite to replace it anyway" in str(info.value) or "--overwrite" in str(info.value)
        check_output(out, [source], "an OpenSTL checkpoint", kind_of, overwrite=True)  # the explicit flag
    check_output(same_kind, [source], "an OpenSTL checkpoint", kind_of)  # its own kind: replaced as before
    check_output(tmp_path / "new.ckpt", [source], "an OpenSTL checkpoint", kind_of)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(FileError, match="a FIFO"):
        check_output(tmp_path / "fifo", [source], "an OpenSTL checkpoint", kind_of, overwrite=True)
    assert (source.read_text(), other.read_text()) == ("input", "notes")
