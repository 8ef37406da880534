"""Where pieces live on disk: the .part file of a download and the file being seeded.

Expected hashes are computed here with hashlib over slices of the test data, independently
of the code under test.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest
from conftest import nowait_reads

from p2pcli.errors import ExitCode, StorageError, UsageError
from p2pcli.manifest import Manifest
from p2pcli.store import PART_MAGIC, BlockChecks, PartFile, PieceCache, SeedFile, SourceChanged
from p2pcli.tree import hash_tree
from p2pcli.treestore import SeedTree

PIECE = 16 * 1024
SIZE = 3 * PIECE + 1000  # four pieces, the last one short


@pytest.fixture
def content() -> bytes:
    return random.Random(7).randbytes(SIZE)


@pytest.fixture
def manifest(content: bytes) -> Manifest:
    hashes = [
        hashlib.sha256(content[i : i + PIECE]).digest() for i in range(0, len(content), PIECE)
    ]
    return Manifest.create("movie.mkv", SIZE, PIECE, hashes)


def piece(content: bytes, i: int) -> bytes:
    return content[i * PIECE : (i + 1) * PIECE]


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


# -- PartFile ------------------------------------------------------------------------------


def test_a_new_part_file_is_created_empty_and_has_no_pieces(tmp_path: Path, manifest) -> None:
    part = PartFile(tmp_path / "movie.mkv.part", manifest)
    try:
        assert (tmp_path / "movie.mkv.part").exists()
        assert part.scan() == []
    finally:
        part.close()


def test_resume_finds_exactly_the_pieces_written_before(tmp_path: Path, manifest, content) -> None:
    path = tmp_path / "movie.mkv.part"
    part = PartFile(path, manifest)
    part.write_piece(1, piece(content, 1))
    part.write_piece(3, piece(content, 3))  # the short last piece
    part.close()
    again = PartFile(path, manifest)
    try:
        assert again.scan() == [1, 3]
        assert again.read_piece(1) == piece(content, 1)
        assert again.read_piece(3) == piece(content, 3)
        assert again.read_block(1, 100, 50) == piece(content, 1)[100:150]
    finally:
        again.close()


def test_a_corrupted_piece_on_disk_is_not_found(tmp_path: Path, manifest, content) -> None:
    path = tmp_path / "movie.mkv.part"
    part = PartFile(path, manifest)
    for i in range(4):
        part.write_piece(i, piece(content, i))
    part.close()
    overwrite(path, 2 * PIECE + 500, b"\xff")  # one byte in piece 2
    again = PartFile(path, manifest)
    try:
        assert again.scan() == [0, 1, 3]
    finally:
        again.close()


@pytest.mark.parametrize("keep", [0, PIECE - 1, PIECE, 2 * PIECE + 10, SIZE - 1, SIZE + 39])
def test_a_part_file_cut_short_is_not_resumed_without_force(
    tmp_path: Path, manifest, content, keep: int
) -> None:
    # A .part p2p made always ends with its trailer (written before the first piece), so
    # one of another length was made or changed by something else: it is left alone.
    path = tmp_path / "movie.mkv.part"
    part = PartFile(path, manifest)
    for i in range(4):
        part.write_piece(i, piece(content, i))
    part.close()
    os.truncate(path, keep)
    with pytest.raises(UsageError, match=r"not started by p2p.*--force") as e:
        PartFile(path, manifest)
    assert e.value.exit_code == ExitCode.USAGE
    assert os.path.getsize(path) == keep
    again = PartFile(path, manifest, force=True)  # --force starts a new one in its place
    try:
        assert again.scan() == []
    finally:
        again.close()


def test_pieces_missing_before_others_do_not_hide_later_ones(
    tmp_path: Path, manifest, content
) -> None:
    # Written out of order: the holes read as zeros and fail, the rest verify.
    path = tmp_path / "movie.mkv.part"
    part = PartFile(path, manifest)
    part.write_piece(3, piece(content, 3))
    try:
        assert os.path.getsize(path) == SIZE + len(PART_MAGIC) + 32  # content, trailer
        assert part.scan() == [3]
    finally:
        part.close()


def test_finish_trims_to_size_and_renames_to_the_final_name(
    tmp_path: Path, manifest, content
) -> None:
    path = tmp_path / "movie.mkv.part"
    final = tmp_path / "movie.mkv"
    part = PartFile(path, manifest)
    for i in range(4):
        part.write_piece(i, piece(content, i))
    overwrite(path, SIZE, b"junk past the end")  # e.g. left by an older, longer download
    part.finish(final, force=False)
    part.close()
    assert final.read_bytes() == content
    assert not path.exists()
    assert part.path == final


def test_finish_without_a_final_name_only_trims(tmp_path: Path, manifest, content) -> None:
    path = tmp_path / "spool.part"
    part = PartFile(path, manifest)
    for i in range(4):
        part.write_piece(i, piece(content, i))
    assert os.path.getsize(path) > SIZE  # the trailer
    part.finish(None, force=False)
    part.close()
    assert path.read_bytes() == content


def test_finish_refuses_to_overwrite_an_existing_file(tmp_path: Path, manifest, content) -> None:
    path = tmp_path / "movie.mkv.part"
    final = tmp_path / "movie.mkv"
    final.write_bytes(b"precious")
    part = PartFile(path, manifest)
    for i in range(4):
        part.write_piece(i, piece(content, i))
    with pytest.raises(UsageError, match="already exists; use --force") as e:
        part.finish(final, force=False)
    assert e.value.exit_code == ExitCode.USAGE
    assert final.read_bytes() == b"precious"
    assert path.exists()  # the download is kept
    part.finish(final, force=True)
    part.close()
    assert final.read_bytes() == content
    assert not path.exists()


def test_unwritable_part_file_is_a_storage_error(tmp_path: Path, manifest) -> None:
    with pytest.raises(StorageError, match="creating the download file") as e:
        PartFile(tmp_path / "no such dir" / "x.part", manifest)
    assert e.value.exit_code == ExitCode.IO


def test_remove_deletes_the_part_file(tmp_path: Path, manifest, content) -> None:
    path = tmp_path / "movie.mkv.part"
    part = PartFile(path, manifest)
    part.write_piece(0, piece(content, 0))
    part.remove()
    assert not path.exists()


# -- SeedFile ------------------------------------------------------------------------------


@pytest.fixture
def seeded(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "movie.mkv"
    path.write_bytes(content)
    return path


def test_seed_file_serves_verified_pieces_and_blocks(seeded: Path, manifest, content) -> None:
    seed = SeedFile(seeded, manifest)
    try:
        assert [seed.has(i) for i in (-1, 0, 3, 4)] == [False, True, True, False]
        for i in range(4):
            assert seed.read_piece(i) == piece(content, i)
        assert seed.read_block(3, 10, 100) == piece(content, 3)[10:110]
        assert seed.read_block(1, PIECE - 5, 5) == piece(content, 1)[-5:]
    finally:
        seed.close()


def test_seed_file_changed_on_disk_raises_source_changed(seeded: Path, manifest, content) -> None:
    seed = SeedFile(seeded, manifest)
    try:
        seed.read_piece(0)
        overwrite(seeded, PIECE + 7, b"\x00\x01\x02")
        with pytest.raises(SourceChanged, match=r"changed on disk.*piece 1.*p2p seed again") as e:
            seed.read_block(1, 0, 100)
        assert isinstance(e.value, StorageError)
        assert e.value.exit_code == ExitCode.IO
    finally:
        seed.close()


def test_seed_file_truncated_on_disk_raises_source_changed(seeded: Path, manifest) -> None:
    seed = SeedFile(seeded, manifest)
    try:
        os.truncate(seeded, 2 * PIECE + 10)
        assert seed.read_piece(1)  # still whole
        with pytest.raises(SourceChanged, match="piece 2"):
            seed.read_piece(2)
        with pytest.raises(SourceChanged, match="piece 3"):
            seed.read_piece(3)
    finally:
        seed.close()


def test_seed_file_keeps_serving_verified_pieces_from_its_cache(
    seeded: Path, manifest, content
) -> None:
    # The cache exists so a piece is read and hashed once, not once per block request.
    cache = PieceCache()
    seed = SeedFile(seeded, manifest, cache)
    try:
        assert seed.read_piece(2) == piece(content, 2)
        assert cache.get(2) == piece(content, 2)
        overwrite(seeded, 2 * PIECE, b"\x00" * 10)
        assert seed.read_block(2, 0, 10) == piece(content, 2)[:10]  # the verified copy
    finally:
        seed.close()


def test_a_bad_piece_is_not_cached(seeded: Path, manifest) -> None:
    cache = PieceCache()
    overwrite(seeded, 0, b"\x00")
    seed = SeedFile(seeded, manifest, cache)
    try:
        with pytest.raises(SourceChanged):
            seed.read_piece(0)
        assert cache.get(0) is None
    finally:
        seed.close()


def test_seed_file_that_cannot_be_opened_is_a_usage_error(tmp_path: Path, manifest) -> None:
    with pytest.raises(UsageError, match="cannot open"):
        SeedFile(tmp_path / "missing.mkv", manifest)


# -- PieceCache ----------------------------------------------------------------------------


def test_cache_evicts_the_least_recently_used_beyond_max_bytes() -> None:
    cache = PieceCache(max_bytes=300)
    for i in range(3):
        cache.put(i, bytes([i]) * 100)
    assert cache.get(0) == b"\x00" * 100  # 0 is now the most recently used
    cache.put(3, b"\x03" * 100)
    assert cache.get(1) is None
    assert [cache.get(i) is not None for i in (0, 2, 3)] == [True, True, True]
    # Those gets made the order 0, 2, 3 (oldest first); 150 more bytes evict 0, then 2.
    cache.put(4, b"\x04" * 150)
    assert cache.get(0) is None and cache.get(2) is None
    assert cache.get(3) is not None and cache.get(4) is not None


def test_cache_counts_a_piece_put_twice_once() -> None:
    cache = PieceCache(max_bytes=200)
    cache.put(0, b"a" * 100)
    cache.put(0, b"a" * 100)
    cache.put(1, b"b" * 100)
    assert cache.get(0) is not None and cache.get(1) is not None


def test_cache_keeps_the_newest_piece_even_if_it_alone_is_too_big() -> None:
    cache = PieceCache(max_bytes=100)
    cache.put(0, b"a" * 50)
    cache.put(1, b"b" * 500)
    assert cache.get(0) is None
    assert cache.get(1) == b"b" * 500
    cache.put(2, b"c" * 10)
    assert cache.get(1) is None and cache.get(2) == b"c" * 10


def test_cache_stays_within_max_bytes_under_random_use() -> None:
    rng = random.Random(5)
    cache = PieceCache(max_bytes=1000)
    recent: list[int] = []  # most recent last
    sizes: dict[int, int] = {}
    for _ in range(2000):
        i = rng.randrange(40)
        if rng.random() < 0.5:
            data = cache.get(i)
            if data is not None:
                recent.remove(i)
                recent.append(i)
        elif cache.get(i) is None:
            sizes[i] = rng.randint(1, 300)
            cache.put(i, b"x" * sizes[i])
            recent.append(i)
        else:
            recent.remove(i)
            recent.append(i)
        # Model: drop least recently used while over the limit, keeping at least one.
        while sum(sizes[j] for j in recent) > 1000 and len(recent) > 1:
            recent.pop(0)
        assert list(cache._items) == recent  # held pieces, least recently used first


# -- reads on the event loop (read_block_nowait) ---------------------------------------------


@pytest.fixture
def nowait(tmp_path: Path) -> None:
    if not nowait_reads(tmp_path):
        pytest.skip("this filesystem or OS has no RWF_NOWAIT reads: the seeder uses threads")


def tables_of(content: bytes) -> BlockChecks:
    """CRC tables as hashing makes them, and no verified copy in a PieceCache."""
    checks = BlockChecks()
    for i in range(4):
        checks.put(i, BlockChecks.table_for(piece(content, i)))
    return checks


def test_a_block_with_a_table_is_read_without_a_thread(seeded: Path, manifest, content,
                                                       nowait: None) -> None:
    seed = SeedFile(seeded, manifest)
    try:
        assert seed.read_block_nowait(1, 0, PIECE) is None, "no table yet: the thread path"
        for i in range(4):
            seed.read_piece(i)  # verified by SHA-256: tables made
        for i, offset, length in [(0, 0, PIECE), (1, 0, 1000), (2, 5000, 100), (3, 0, 1000),
                                  (3, 999, 1)]:
            got = seed.read_block_nowait(i, offset, length)
            assert got == piece(content, i)[offset : offset + length]
    finally:
        seed.close()


def test_a_changed_block_is_left_to_the_thread_path_which_says_so(
    seeded: Path, manifest, content
) -> None:
    seed = SeedFile(seeded, manifest, checks=tables_of(content))
    try:
        overwrite(seeded, PIECE + 7, b"\x00\x01\x02")
        assert seed.read_block_nowait(1, 0, 100) is None
        with pytest.raises(SourceChanged, match="piece 1"):
            seed.read_block(1, 0, 100)
    finally:
        seed.close()


def test_a_block_not_in_the_page_cache_is_never_read_on_the_loop(
    seeded: Path, manifest, content, nowait: None
) -> None:
    # RWF_NOWAIT: what is not in memory needs a disk read, which belongs in a thread.
    seed = SeedFile(seeded, manifest, checks=tables_of(content))
    try:
        fd = os.open(seeded, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        assert seed.read_block_nowait(2, 0, PIECE) is None
        assert seed.read_block(2, 0, PIECE) == piece(content, 2)  # now read from disk
        assert seed.read_block_nowait(2, 0, PIECE) == piece(content, 2)
    finally:
        seed.close()


def test_a_downloads_verified_pieces_are_read_on_the_loop(tmp_path: Path, manifest, content,
                                                          nowait: None) -> None:
    part = PartFile(tmp_path / "movie.mkv.part", manifest)
    try:
        assert part.read_block_nowait(0, 0, 10) is None
        part.write_piece(0, piece(content, 0))
        assert part.read_block_nowait(0, 0, 10) == piece(content, 0)[:10]
    finally:
        part.close()


def test_a_folder_share_always_reads_in_a_thread(tmp_path: Path) -> None:
    # Its pieces span files: one descriptor and offset cannot read them.
    folder = tmp_path / "show"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"a" * 20_000)
    (folder / "b.bin").write_bytes(b"b" * 30_000)
    m, items = hash_tree([str(folder)], use_cache=False)
    tree = SeedTree(str(folder), m, items.files())
    try:
        whole = tree.read_piece(0)
        assert tree.checks.get(0) is not None
        assert tree.read_block_nowait(0, 0, 100) is None
        assert tree.read_block(0, 0, 100) == whole[:100]
    finally:
        tree.close()


def test_without_rwf_nowait_reads_fall_back_to_threads(manifest, content) -> None:
    # tmpfs answers RWF_NOWAIT with EOPNOTSUPP here: the source stops trying, and every
    # read goes the thread path, which still serves the right bytes.
    shm = Path("/dev/shm")
    if not shm.is_dir() or nowait_reads(shm):
        pytest.skip("no tmpfs without RWF_NOWAIT here to fall back from")
    path = shm / f"p2p-test-{os.getpid()}.bin"
    path.write_bytes(content)
    seed = SeedFile(path, manifest, checks=tables_of(content))
    try:
        assert seed.read_block_nowait(0, 0, 100) is None
        assert seed._nowait is False, "one EOPNOTSUPP is enough: no syscall per block after"
        assert seed.read_block(0, 0, 100) == piece(content, 0)[:100]
    finally:
        seed.close()
        path.unlink()
