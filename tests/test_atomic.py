"""write_atomically: the file is replaced whole, with a new file's permissions, no temporary left."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from driftgauge.atomic import open_regular, remove_leftovers, write_atomically


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    ("mask", "expected"),
    [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)],
    ids=["umask-022", "umask-077", "umask-002"],
)
def test_a_written_file_gets_the_mode_open_gives_under_the_umask(
    tmp_path: Path, umask: Callable[[int], int], mask: int, expected: int
) -> None:
    """0666 less the umask, as open(path, "w") gives a new file (mkstemp gave 0600 always)."""
    umask(mask)
    write_atomically(tmp_path / "b.dgb", b"data")
    with (tmp_path / "plain").open("w"):
        pass
    assert mode(tmp_path / "b.dgb") == mode(tmp_path / "plain") == expected


def test_a_caller_may_ask_for_owner_only(tmp_path: Path, umask: Callable[[int], int]) -> None:
    """mode=0o600 gives 0600 under the usual umask."""
    umask(0o022)
    write_atomically(tmp_path / "state", b"data", mode=0o600)
    assert mode(tmp_path / "state") == 0o600


def test_replacing_a_file_leaves_only_the_new_one(
    tmp_path: Path, umask: Callable[[int], int]
) -> None:
    """The replaced file's content and mode are the new ones; no temporary file remains."""
    umask(0o022)
    target = tmp_path / "b.dgb"
    target.write_bytes(b"old")
    target.chmod(0o600)
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert mode(target) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["b.dgb"]


def test_a_failed_replace_leaves_no_temporary_file(tmp_path: Path) -> None:
    """When the rename fails (the target is a directory), the temporary file is removed."""
    (tmp_path / "taken").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomically(tmp_path / "taken", b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


@pytest.mark.parametrize("name", ["wine.state", "a[1]*?.state", "na%C3%AFve.state"])
def test_leftovers_of_writes_killed_midway_are_removed_and_nothing_else(
    tmp_path: Path, name: str
) -> None:
    """The temporaries a killed write left (made as write_atomically makes them) are removed;
    the file itself, another file's temporaries and other files stay."""
    from driftgauge import atomic

    path = tmp_path / name
    write_atomically(path, b"kept")
    for _ in range(3):  # what three writes killed before their rename leave behind
        descriptor, _temporary = atomic._create_temporary(path, 0o600)
        os.close(descriptor)
    other = tmp_path / "other.state"
    descriptor, other_temporary = atomic._create_temporary(other, 0o600)
    os.close(descriptor)
    (tmp_path / f"{name}.tmp").write_bytes(b"not ours")
    before = set(tmp_path.iterdir())
    assert len(before) == 6
    assert remove_leftovers(path) == 3
    assert set(tmp_path.iterdir()) == {path, other_temporary, tmp_path / f"{name}.tmp"}
    assert path.read_bytes() == b"kept"
    assert remove_leftovers(path) == 0


def test_a_link_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    """A path that is a link (a tail offset or snapshot linked onto a volume) has the file it
    leads to replaced, as open(path, "w") would write it: the rename replaced the link by a
    file of its own, beside it, so the volume's file was never written and the next container
    found no offset.  A killed write's leftovers are found beside that file."""
    from driftgauge import atomic

    (tmp_path / "volume").mkdir()
    target, link = tmp_path / "volume" / "req.offset", tmp_path / "req.offset"
    link.symlink_to(target)
    write_atomically(link, b"new")
    assert link.is_symlink()
    assert target.read_bytes() == b"new"
    write_atomically(link, b"newer")
    assert target.read_bytes() == b"newer"
    descriptor, _temporary = atomic._create_temporary(target, 0o600)
    os.close(descriptor)
    assert remove_leftovers(link) == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["req.offset", "req.offset", "volume"]


def test_only_a_regular_file_is_opened_for_reading(tmp_path: Path) -> None:
    """A file (through a link too) opens; a FIFO is refused at once rather than waited on for
    a writer, and a folder is refused too, each naming the path."""
    write_atomically(tmp_path / "state", b"data")
    (tmp_path / "link").symlink_to("state")
    with open(open_regular(tmp_path / "link"), "rb") as handle:
        assert handle.read() == b"data"
    os.mkfifo(tmp_path / "fifo")
    for path in (tmp_path / "fifo", tmp_path):
        with pytest.raises(OSError, match=f"not a regular file: '{path}'"):
            open_regular(path)
