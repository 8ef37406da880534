"""Where the seeder reads a requested block (p2pcli.swarm.uploader): on the event loop when
the page cache holds it and its piece has a CRC table, in a thread otherwise.

The seeder used to take a thread trip for every 64 KiB block it served; that cost about a
third of its CPU and slowed its answers under loss (benchmarks/README.md, sixth pass)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import nowait_reads

from p2pcli.hashing import hash_file
from p2pcli.store import BlockChecks, SeedFile
from p2pcli.swarm import uploader
from p2pcli.swarm.uploader import Uploader

KiB = 1 << 10


@pytest.fixture
def content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, bytes]:
    monkeypatch.setenv("P2P_CACHE_DIR", str(tmp_path / "cache"))
    data = random.Random(3).randbytes(300 * KiB + 5)
    path = tmp_path / "movie.mkv"
    path.write_bytes(data)
    return path, data


class CountingThreads:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, fn, *args):  # type: ignore[no-untyped-def]
        self.calls += 1
        return fn(*args)


def read_all(source: SeedFile, threads: CountingThreads, monkeypatch) -> bytes:
    monkeypatch.setattr(uploader.asyncio, "to_thread", threads)
    up = Uploader(core=None, limiter=None, owner=SimpleNamespace(source=source))  # type: ignore[arg-type]
    m = source.manifest

    async def run() -> bytes:
        out = bytearray()
        for piece in range(m.piece_count):
            for offset in range(0, m.piece_length(piece), 16 * KiB):
                length = min(16 * KiB, m.piece_length(piece) - offset)
                data = await up._read((piece, offset, length))
                assert data is not None
                out += data
        return bytes(out)

    return asyncio.run(run())


@pytest.mark.parametrize("cached", [False, True], ids=["just hashed", "manifest cache"])
def test_a_file_just_hashed_is_served_without_a_thread_trip(
    content: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch, cached: bool
) -> None:
    path, data = content
    if not nowait_reads(path.parent):
        pytest.skip("this filesystem or OS has no RWF_NOWAIT reads: the seeder uses threads")
    if cached:
        hash_file(path, checks=BlockChecks())  # the first seed; this one reads the cache
    checks = BlockChecks()
    m = hash_file(path, checks=checks)
    source = SeedFile(path, m, checks=checks)
    threads = CountingThreads()
    try:
        assert read_all(source, threads, monkeypatch) == data
    finally:
        source.close()
    assert threads.calls == 0


def test_without_tables_every_piece_goes_through_a_thread_once(
    content: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tables are made by the SHA-256 check of a piece's first read, in a thread; the
    # piece's other blocks then come from the piece cache.
    path, data = content
    m = hash_file(path, use_cache=False)
    source = SeedFile(path, m)
    threads = CountingThreads()
    try:
        assert read_all(source, threads, monkeypatch) == data
    finally:
        source.close()
    assert threads.calls == m.piece_count
