"""Hashing a file into its manifest, with progress and an on-disk cache (p2pcli.hashing).

Expected piece hashes are computed here with plain hashlib over slices of the file's bytes,
independently of the code under test.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import zlib
from array import array
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pcli import hashing
from p2pcli.errors import ExitCode, UsageError
from p2pcli.hashing import cache_dir, hash_file, hash_pieces
from p2pcli.manifest import Manifest, decode, piece_size_for
from p2pcli.store import BlockChecks

KiB = 1 << 10
MiB = 1 << 20


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache directory; the user's cache is never touched."""
    d = tmp_path / "cache"
    monkeypatch.setenv("P2P_CACHE_DIR", str(d))
    return d


def expected_hashes(data: bytes, piece_size: int) -> list[bytes]:
    return [
        hashlib.sha256(data[i : i + piece_size]).digest() for i in range(0, len(data), piece_size)
    ]


def pseudo_random(n: int, seed: int = 0) -> bytes:
    """Deterministic bytes with no repeating pattern (so swapped pieces would be noticed)."""
    return random.Random(seed).randbytes(n)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


class Recorder:
    """A progress callback that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


# -- what gets hashed ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, 16 * KiB - 1, 16 * KiB, 16 * KiB + 1, 3 * MiB + 5, 16 * MiB + 1],
    ids=lambda n: f"{n}B",
)
def test_hash_file_matches_hashlib(tmp_path: Path, size: int) -> None:
    data = pseudo_random(size)
    path = write(tmp_path / "video.mkv", data)
    m = hash_file(path, use_cache=False)
    piece_size = piece_size_for(size)
    assert m == Manifest.create("video.mkv", size, piece_size, expected_hashes(data, piece_size))
    # 16 MiB + 1 is the first size whose pieces (32 KiB) are bigger than the minimum.
    assert piece_size == (32 * KiB if size > 16 * MiB else 16 * KiB)


def test_name_defaults_to_the_file_name_and_can_be_overridden(tmp_path: Path) -> None:
    path = write(tmp_path / "holiday vidéo.mkv", b"x")
    assert hash_file(path).name == "holiday vidéo.mkv"
    assert hash_file(path, name="other.mkv").name == "other.mkv"


def test_relative_path_and_tilde_are_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "f.bin", b"abc")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hash_file("f.bin") == hash_file("~/f.bin") == hash_file(tmp_path / "f.bin")


@pytest.mark.parametrize("piece_size", [16 * KiB, 64 * KiB, MiB, 4 * MiB, 16 * MiB])
def test_hash_pieces_matches_hashlib_for_every_piece_size(piece_size: int) -> None:
    # Piece sizes both below and above any internal read size, with a short last piece.
    data = pseudo_random(2 * piece_size + 12345)
    assert hash_pieces(io.BytesIO(data), len(data), piece_size) == expected_hashes(data, piece_size)


class Trickle(io.RawIOBase):
    """A file that returns at most `most` bytes per read, as pipes and network mounts may."""

    def __init__(self, data: bytes, most: int) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.most = most

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        n = min(len(b), self.most, len(self.data) - self.pos)
        b[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 100 * KiB),
    st.sampled_from([1, 1000, 16 * KiB - 1, 16 * KiB, 100 * KiB]),
    st.sampled_from([16 * KiB, 32 * KiB]),
)
def test_hash_pieces_survives_short_reads(size: int, most: int, piece_size: int) -> None:
    data = pseudo_random(size, seed=size)
    got = hash_pieces(Trickle(data, most), size, piece_size)
    assert got == expected_hashes(data, piece_size)


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the threaded path even on a one-CPU machine."""
    monkeypatch.setattr(hashing.os, "cpu_count", lambda: 2)


@pytest.mark.parametrize("piece_size", [16 * KiB, MiB, 8 * MiB, 16 * MiB])
def test_threaded_and_single_threaded_hashing_agree(
    tmp_path: Path, two_cpus: None, piece_size: int
) -> None:
    # Piece sizes below and above the run one thread takes, with a short last piece.
    data = pseudo_random(2 * piece_size + 5 * MiB + 7)
    path = write(tmp_path / "f", data)
    expected = expected_hashes(data, piece_size)
    for workers in (1, 2):
        with open(path, "rb", buffering=0) as f:
            assert hash_pieces(f, len(data), piece_size, workers=workers) == expected
            assert f.tell() == len(data)


def test_threaded_hashing_starts_at_the_file_position(tmp_path: Path, two_cpus: None) -> None:
    data = pseudo_random(10 * MiB)
    path = write(tmp_path / "f", b"header" + data + b"trailer")
    with open(path, "rb", buffering=0) as f:
        f.seek(6)
        assert hash_pieces(f, len(data), MiB) == expected_hashes(data, MiB)
        assert f.tell() == 6 + len(data)


def test_threaded_progress_rises_to_the_total(tmp_path: Path, two_cpus: None) -> None:
    size = 60 * MiB + 1
    path = write(tmp_path / "f", pseudo_random(size))
    rec = Recorder()
    with open(path, "rb", buffering=0) as f:
        hash_pieces(f, size, 64 * KiB, rec)
    assert len(rec.calls) >= 3 and rec.calls[-1] == (size, size)
    done = [d for d, _ in rec.calls]
    assert done == sorted(done)


def test_file_that_shrinks_under_threaded_hashing(tmp_path: Path, two_cpus: None) -> None:
    path = write(tmp_path / "f", pseudo_random(9 * MiB))
    with open(path, "rb", buffering=0) as f, pytest.raises(UsageError, match="shrank"):
        hash_pieces(f, 30 * MiB, MiB)


def test_hash_pieces_reads_no_further_than_size() -> None:
    f = io.BytesIO(b"a" * 100 + b"appended after stat")
    assert hash_pieces(f, 100, 16 * KiB) == [hashlib.sha256(b"a" * 100).digest()]


def test_file_that_shrinks_while_hashing_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="shrank"):
        hash_pieces(io.BytesIO(b"a" * 100), 200, 16 * KiB)


# -- progress ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 16 * KiB, 40 * MiB + 3], ids=lambda n: f"{n}B")
def test_progress_rises_to_the_total(tmp_path: Path, size: int) -> None:
    path = write(tmp_path / "f", pseudo_random(size))
    rec = Recorder()
    hash_file(path, rec, use_cache=False)
    assert rec.calls, "progress is reported at least once, even for an empty file"
    assert rec.calls[-1] == (size, size)
    assert all(total == size for _, total in rec.calls)
    done = [d for d, _ in rec.calls]
    assert done == sorted(done) and all(0 <= d <= size for d in done)


def test_progress_is_throttled(tmp_path: Path) -> None:
    # A callback per piece would cost a rich redraw every 16 KiB; a few dozen calls suffice.
    path = write(tmp_path / "f", pseudo_random(40 * MiB))
    rec = Recorder()
    hash_file(path, rec, use_cache=False)
    assert 2 <= len(rec.calls) <= 64


# -- the cache -----------------------------------------------------------------------------


class CountingHashPieces:
    """Stands in for hashing.hash_pieces and counts how often the file is really read."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args, **kwargs) -> list[bytes]:
        self.calls += 1
        return hash_pieces(*args, **kwargs)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingHashPieces:
    counter = CountingHashPieces()
    monkeypatch.setattr(hashing, "hash_pieces", counter)
    return counter


def test_cache_dir_follows_p2p_cache_dir(cache: Path) -> None:
    assert cache_dir() == cache


def test_second_call_is_served_from_the_cache(
    tmp_path: Path, cache: Path, counting: CountingHashPieces
) -> None:
    path = write(tmp_path / "f", pseudo_random(100 * KiB))
    first = hash_file(path)
    assert counting.calls == 1
    [entry] = cache.iterdir()
    assert decode(entry.read_bytes()) == first

    rec = Recorder()
    second = hash_file(path, rec)
    assert counting.calls == 1, "an unchanged file is not read again"
    assert second == first
    assert rec.calls == [(100 * KiB, 100 * KiB)], "a cache hit still completes the progress bar"


def test_cache_is_invalidated_when_mtime_changes(
    tmp_path: Path, counting: CountingHashPieces
) -> None:
    path = write(tmp_path / "f", b"before")
    first = hash_file(path)
    st = path.stat()
    path.write_bytes(b"after!")  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = hash_file(path)
    assert counting.calls == 2
    assert second.piece_hashes == (hashlib.sha256(b"after!").digest(),)
    assert second.content_hash != first.content_hash


def test_touching_a_file_rehashes_it(tmp_path: Path, counting: CountingHashPieces) -> None:
    path = write(tmp_path / "f", b"same bytes")
    first = hash_file(path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert hash_file(path) == first
    assert counting.calls == 2


def test_replacing_a_file_rehashes_it(tmp_path: Path, counting: CountingHashPieces) -> None:
    path = write(tmp_path / "f", b"old")
    st = path.stat()
    hash_file(path)
    new = write(tmp_path / "f.new", b"new")
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime, new inode
    os.replace(new, path)
    assert hash_file(path).piece_hashes == (hashlib.sha256(b"new").digest(),)
    assert counting.calls == 2


def test_cache_entry_is_per_name(tmp_path: Path, counting: CountingHashPieces) -> None:
    path = write(tmp_path / "f", b"x")
    hash_file(path)
    assert hash_file(path, name="shown.bin").name == "shown.bin"
    assert counting.calls == 2


def test_use_cache_false_neither_reads_nor_writes_the_cache(
    tmp_path: Path, cache: Path, counting: CountingHashPieces
) -> None:
    path = write(tmp_path / "f", b"x")
    hash_file(path, use_cache=False)
    assert not cache.exists()
    hash_file(path)
    hash_file(path, use_cache=False)
    assert counting.calls == 3


def test_corrupt_cache_entry_is_ignored(
    tmp_path: Path, cache: Path, counting: CountingHashPieces
) -> None:
    path = write(tmp_path / "f", b"x")
    good = hash_file(path)
    [entry] = cache.iterdir()
    entry.write_bytes(b"garbage")
    assert hash_file(path) == good
    assert counting.calls == 2
    assert decode(entry.read_bytes()) == good, "the entry is rewritten"


def test_unwritable_cache_only_costs_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counting: CountingHashPieces
) -> None:
    blocker = write(tmp_path / "not-a-dir", b"")
    monkeypatch.setenv("P2P_CACHE_DIR", str(blocker / "cache"))
    path = write(tmp_path / "f", b"x")
    assert hash_file(path) == hash_file(path)
    assert counting.calls == 2


# -- files that cannot be shared -----------------------------------------------------------


def assert_usage_error(path: os.PathLike[str] | str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as e:
        hash_file(path)
    assert e.value.exit_code == ExitCode.USAGE


def test_missing_file(tmp_path: Path) -> None:
    assert_usage_error(tmp_path / "nope.mkv", "no such file")


def test_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    assert_usage_error(tmp_path / "link", "no such file")


def test_directory(tmp_path: Path) -> None:
    assert_usage_error(tmp_path, "is a directory")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    # Opening a FIFO with no writer would hang; it must be refused before any open().
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert_usage_error(fifo, "not a regular file")


def test_character_device_is_refused() -> None:
    assert_usage_error("/dev/null", "not a regular file")


def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path / "secret", b"x")
    path.chmod(0)
    if os.geteuid() != 0:
        assert_usage_error(path, "permission denied")
        return
    # Root reads anything: drop the capabilities that let it, as an ordinary user would be.
    import subprocess
    import sys

    drop = "-dac_override,-dac_read_search"
    code = (
        "import sys\nfrom p2pcli.hashing import hash_file\nfrom p2pcli.errors import UsageError\n"
        "try:\n    hash_file(sys.argv[1], use_cache=False)\n"
        "except UsageError as e:\n    print(e.message)\n"
    )
    out = subprocess.run(
        ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", sys.executable, "-c", code,
         str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert "permission denied" in out.stdout, out.stdout + out.stderr


def test_unreadable_file_even_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root bypasses permission bits, so simulate what an ordinary user would see.
    path = write(tmp_path / "secret", b"x")
    monkeypatch.setattr(hashing.os, "access", lambda p, mode: False)
    assert_usage_error(path, "permission denied")


def test_read_error_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "f", b"x")

    def failing(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(hashing, "hash_pieces", failing)
    assert_usage_error(path, "read failed")


def test_a_symlink_is_shared_under_its_own_name(tmp_path: Path) -> None:
    target = write(tmp_path / "v3.mkv", b"video")
    link = tmp_path / "latest.mkv"
    link.symlink_to(target)
    assert hash_file(link, use_cache=False).name == "latest.mkv"


def test_a_file_written_while_it_is_hashed_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "growing.bin", pseudo_random(100_000))
    real = hashing.hash_pieces

    def appending(*args, **kwargs):
        out = real(*args, **kwargs)
        with open(path, "ab") as f:  # the writer is still at work
            f.write(b"more")
        return out

    monkeypatch.setattr(hashing, "hash_pieces", appending)
    with pytest.raises(UsageError, match="changed while it was being hashed"):
        hash_file(path, use_cache=False)


# -- CRC tables made while hashing (what a seeder's first reads check) --------------------


def expected_tables(data: bytes, m: Manifest) -> list[list[int]]:
    """Per piece, the CRC-32 of each 16 KiB sub-block: plain zlib over slices."""
    out = []
    for i in range(m.piece_count):
        chunk = data[i * m.piece_size : (i + 1) * m.piece_size]
        out.append([zlib.crc32(chunk[j : j + 16 * KiB]) for j in range(0, max(len(chunk), 1),
                                                                        16 * KiB)])
    return out


def tables(checks: BlockChecks, m: Manifest) -> list[list[int] | None]:
    return [None if (t := checks.get(i)) is None else list(t) for i in range(m.piece_count)]


@pytest.mark.parametrize(
    "size",
    # one thread (small), several threads (> 4 MiB runs), a short last sub-block and piece
    [1, 16 * KiB - 1, 16 * KiB, 100 * KiB + 3, 5 * MiB + 7, 9 * MiB],
    ids=lambda n: f"{n}B",
)
def test_hashing_fills_the_crc_tables_of_every_piece(tmp_path: Path, size: int) -> None:
    data = pseudo_random(size, seed=size)
    checks = BlockChecks()
    m = hash_file(write(tmp_path / "f", data), use_cache=False, checks=checks)
    assert tables(checks, m) == expected_tables(data, m)


@given(size=st.integers(1, 300 * KiB), most=st.integers(1, 40 * KiB))
@settings(max_examples=40, deadline=None)
def test_crc_tables_survive_short_reads(size: int, most: int) -> None:
    data = pseudo_random(size, seed=most)
    crcs = array("I")
    hash_pieces(Trickle(data, most), size, 64 * KiB, crcs=crcs)
    assert list(crcs) == [zlib.crc32(data[j : j + 16 * KiB]) for j in range(0, size, 16 * KiB)]


def test_a_cache_hit_brings_the_crc_tables_back(
    tmp_path: Path, cache: Path, counting: CountingHashPieces
) -> None:
    data = pseudo_random(300 * KiB)
    path = write(tmp_path / "f", data)
    m = hash_file(path, checks=BlockChecks())
    assert sorted(p.suffix for p in cache.iterdir()) == [".checks", ".manifest"]
    again = BlockChecks()
    assert hash_file(path, checks=again) == m
    assert counting.calls == 1, "tables from the cache, not from a second read"
    assert tables(again, m) == expected_tables(data, m)


@pytest.mark.parametrize("damage", ["flip a byte", "cut short", "delete"])
def test_a_damaged_crc_entry_is_ignored_not_trusted(
    tmp_path: Path, cache: Path, damage: str
) -> None:
    # A wrong table would make the seeder say the file changed on disk: without a sound
    # entry there are no tables, and each piece's first read checks it by SHA-256.
    path = write(tmp_path / "f", pseudo_random(300 * KiB))
    m = hash_file(path, checks=BlockChecks())
    [entry] = cache.glob("*.checks")
    raw = bytearray(entry.read_bytes())
    if damage == "flip a byte":
        raw[-1] ^= 1
        entry.write_bytes(raw)
    elif damage == "cut short":
        entry.write_bytes(raw[:-4])
    else:
        entry.unlink()
    again = BlockChecks()
    assert hash_file(path, checks=again) == m
    assert tables(again, m) == [None] * m.piece_count


def test_tables_of_a_file_too_big_for_the_checks_are_not_made(tmp_path: Path) -> None:
    # 4 bytes per 16 KiB: a bound of 40 bytes holds 10 sub-blocks, and this file has 20.
    path = write(tmp_path / "f", pseudo_random(320 * KiB))
    checks = BlockChecks(max_bytes=40)
    m = hash_file(path, checks=checks)
    assert tables(checks, m) == [None] * m.piece_count
    assert not list(cache_dir().glob("*.checks"))


def test_fill_keeps_the_first_pieces_that_fit_and_rejects_a_wrong_length() -> None:
    m = Manifest.create("f", 4 * 32 * KiB, 32 * KiB, [bytes(32)] * 4)
    crcs = array("I", range(8))  # two sub-blocks a piece
    checks = BlockChecks(max_bytes=5 * 4)
    assert checks.fill(m, crcs) == 2
    assert tables(checks, m) == [[0, 1], [2, 3], None, None]
    assert BlockChecks().fill(m, array("I", range(7))) == 0
