"""Partial files and data paths, as a specification of the store (issue 12, items 9, 12, 15-17).

- A `.part` (or final name) that p2p did not make is never written through: every kind of
  entry (symlink to a file, dangling symlink, directory, FIFO, hard link, someone else's
  file) is refused without --force, and --force replaces the entry, never its target.
- The part name fits in 255 bytes whatever the final name (multi-byte UTF-8 included).
- A byte changed on disk after its piece was verified is never returned, from every store.
- Serving a block costs hashing about the bytes served, not its whole piece.
- A pipe download's spool never holds more than its read-ahead window.

Expected bytes come from the test data itself (hashlib over slices), not from the code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import LOOPBACK, ROOT, Procs, make_file, one_line_error, sha256
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pcli import store as store_mod
from p2pcli.errors import ExitCode, UsageError
from p2pcli.manifest import Manifest
from p2pcli.store import (
    PartFile,
    PieceCache,
    SeedFile,
    SourceChanged,
    SpoolRing,
    check_output,
    part_name,
)

PIECE = 64 * 1024
SIZE = 5 * PIECE + 3000  # six pieces, the last one short
VICTIM = b"precious bytes that are not ours\n"


def make_manifest(content: bytes, piece: int = PIECE, name: str = "movie.bin") -> Manifest:
    hashes = [hashlib.sha256(content[i : i + piece]).digest()
              for i in range(0, len(content), piece)]
    return Manifest.create(name, len(content), piece, hashes)


@pytest.fixture
def content() -> bytes:
    return random.Random(11).randbytes(SIZE)


@pytest.fixture
def manifest(content: bytes) -> Manifest:
    return make_manifest(content)


def pieces(content: bytes, piece: int = PIECE) -> list[bytes]:
    return [content[i : i + piece] for i in range(0, len(content), piece)]


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


# -- item 9: entries p2p did not make ---------------------------------------------------


def _symlink_to_file(path: Path, victim: Path) -> None:
    victim.write_bytes(VICTIM)
    path.symlink_to(victim)


def _symlink_dangling(path: Path, victim: Path) -> None:
    path.symlink_to(victim)  # a write through it would create the victim


def _symlink_to_dir(path: Path, victim: Path) -> None:
    victim.mkdir()
    path.symlink_to(victim)


def _directory(path: Path, victim: Path) -> None:
    path.mkdir()


def _fifo(path: Path, victim: Path) -> None:
    os.mkfifo(path)


def _hardlink(path: Path, victim: Path) -> None:
    victim.write_bytes(VICTIM)
    os.link(victim, path)


def _regular(path: Path, victim: Path) -> None:
    path.write_bytes(VICTIM)


ENTRIES: dict[str, Callable[[Path, Path], None]] = {
    "symlink-to-file": _symlink_to_file,
    "symlink-dangling": _symlink_dangling,
    "symlink-to-dir": _symlink_to_dir,
    "directory": _directory,
    "fifo": _fifo,
    "hardlink": _hardlink,
    "regular-file": _regular,
}
ALWAYS_REFUSED = {"directory"}  # for the .part: --force never removes a directory


def victim_intact(kind: str, victim: Path) -> None:
    if kind in ("symlink-to-file", "hardlink"):
        assert victim.read_bytes() == VICTIM
    if kind == "symlink-dangling":
        assert not victim.exists()
    if kind == "symlink-to-dir":
        assert victim.is_dir() and list(victim.iterdir()) == []


@pytest.mark.parametrize("kind", sorted(ENTRIES))
def test_a_part_entry_p2p_did_not_make_is_refused_and_force_replaces_only_the_entry(
    tmp_path: Path, manifest: Manifest, content: bytes, kind: str
) -> None:
    path, victim, final = tmp_path / "movie.bin.part", tmp_path / "victim", tmp_path / "movie.bin"
    ENTRIES[kind](path, victim)
    with pytest.raises(UsageError) as e:
        PartFile(path, manifest)
    assert e.value.exit_code == ExitCode.USAGE
    assert str(path) in e.value.message and "\n" not in e.value.message
    assert ("directory" if kind in ALWAYS_REFUSED else "--force") in e.value.message
    victim_intact(kind, victim)
    if kind in ALWAYS_REFUSED:
        with pytest.raises(UsageError, match="is a directory"):
            PartFile(path, manifest, force=True)
        assert path.is_dir()
        return
    part = PartFile(path, manifest, force=True)
    try:
        assert path.is_file() and not path.is_symlink() and os.stat(path).st_nlink == 1
        assert part.scan() == []  # a new file: nothing of the old entry is trusted
        for i, data in enumerate(pieces(content)):
            part.write_piece(i, data)
        part.finish(final, force=False)
    finally:
        part.close()
    assert final.read_bytes() == content
    victim_intact(kind, victim)


def test_a_part_made_for_other_content_or_cut_short_needs_force(
    tmp_path: Path, manifest: Manifest, content: bytes
) -> None:
    path = tmp_path / "movie.bin.part"
    other = make_manifest(bytes(SIZE))
    PartFile(path, other).close()  # ours, but for another content hash
    with pytest.raises(UsageError, match="not started by p2p for this content"):
        PartFile(path, manifest)
    path.unlink()
    part = PartFile(path, manifest)
    part.write_piece(0, pieces(content)[0])
    part.close()
    again = PartFile(path, manifest)  # ours: resumes without --force
    try:
        assert again.scan() == [0]
    finally:
        again.close()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_a_part_owned_by_another_user_needs_force(tmp_path: Path, manifest: Manifest) -> None:
    path = tmp_path / "movie.bin.part"
    PartFile(path, manifest).close()
    os.chown(path, 65534, 65534)
    with pytest.raises(UsageError, match="belongs to another user"):
        PartFile(path, manifest)


@pytest.mark.parametrize("kind", sorted(ENTRIES))
def test_the_final_name_follows_the_same_force_rule_and_is_never_written_through(
    tmp_path: Path, manifest: Manifest, content: bytes, kind: str
) -> None:
    final, victim = tmp_path / "movie.bin", tmp_path / "victim"
    ENTRIES[kind](final, victim)
    is_dir = kind in ("directory", "symlink-to-dir")
    with pytest.raises(UsageError, match="is a directory" if is_dir else "--force"):
        check_output(final, force=False)
    if is_dir:
        with pytest.raises(UsageError, match="is a directory"):
            check_output(final, force=True)
        return
    check_output(final, force=True)
    part = PartFile(tmp_path / "movie.bin.part", manifest)
    try:
        for i, data in enumerate(pieces(content)):
            part.write_piece(i, data)
        with pytest.raises(UsageError, match="--force"):
            part.finish(final, force=False)
        part.finish(final, force=True)
    finally:
        part.close()
    assert not final.is_symlink() and final.read_bytes() == content
    victim_intact(kind, victim)


def test_a_refused_finish_keeps_a_part_that_still_resumes(
    tmp_path: Path, manifest: Manifest, content: bytes
) -> None:
    final, path = tmp_path / "movie.bin", tmp_path / "movie.bin.part"
    final.write_bytes(VICTIM)
    part = PartFile(path, manifest)
    for i, data in enumerate(pieces(content)):
        part.write_piece(i, data)
    with pytest.raises(UsageError):
        part.finish(final, force=False)
    part.close()
    again = PartFile(path, manifest)  # the trailer is still there: ours, no --force
    try:
        assert again.scan() == list(range(len(pieces(content))))
    finally:
        again.close()


# -- item 12: part names within 255 bytes -------------------------------------------------

CHARS = {"ascii": "a", "2-byte": "é", "3-byte": "日", "4-byte": "😀"}


def _name_of(nbytes: int, ch: str) -> str:
    """A name of exactly `nbytes` UTF-8 bytes: `ch` repeated, topped up with ASCII."""
    w = len(ch.encode())
    return ch * (nbytes // w) + "x" * (nbytes % w)


@pytest.mark.parametrize("nbytes", [1, 200, 249, 250, 251, 252, 253, 254, 255])
@pytest.mark.parametrize("chars", sorted(CHARS))
def test_the_part_name_fits_in_255_bytes_and_the_file_can_be_created(
    tmp_path: Path, manifest: Manifest, nbytes: int, chars: str
) -> None:
    name = _name_of(nbytes, CHARS[chars])
    assert len(name.encode()) == nbytes
    pn = part_name(name)
    assert len(pn.encode("utf-8")) <= 255  # strict UTF-8: no character cut in half
    assert pn.endswith(".part") and pn != name
    assert pn == part_name(name)  # the same name resumes into the same file
    if nbytes <= 250:
        assert pn == name + ".part"
    PartFile(tmp_path / pn, manifest).close()  # ENAMETOOLONG before the fix
    (tmp_path / name).write_bytes(b"")  # the final name itself is kept whole


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
               min_size=1, max_size=255))
def test_any_name_gives_a_short_enough_distinct_part_name(name: str) -> None:
    pn = part_name(name)
    assert len(pn.encode("utf-8")) <= 255
    assert pn.endswith(".part") and pn != name
    if len((name + ".part").encode()) > 255:
        assert part_name(name + "z") != pn  # long names sharing a prefix do not collide


# -- item 15: nothing changed on disk is ever returned ------------------------------------


def _seed_file(tmp_path: Path, manifest: Manifest, content: bytes) -> tuple[object, Path]:
    path = tmp_path / "movie.bin"
    path.write_bytes(content)
    return SeedFile(path, manifest, PieceCache(max_bytes=1)), path


def _part_written(tmp_path: Path, manifest: Manifest, content: bytes) -> tuple[object, Path]:
    path = tmp_path / "movie.bin.part"
    part = PartFile(path, manifest)
    for i, data in enumerate(pieces(content, manifest.piece_size)):
        part.write_piece(i, data)
    return part, path


def _part_resumed(tmp_path: Path, manifest: Manifest, content: bytes) -> tuple[object, Path]:
    part, path = _part_written(tmp_path, manifest, content)
    part.close()  # type: ignore[attr-defined]
    again = PartFile(path, manifest)
    assert again.scan() == list(range(manifest.piece_count))
    return again, path


def _part_finished(tmp_path: Path, manifest: Manifest, content: bytes) -> tuple[object, Path]:
    part, _ = _part_written(tmp_path, manifest, content)
    final = tmp_path / "movie.bin"
    part.finish(final, force=False)  # type: ignore[attr-defined]
    return part, final  # what `fetch --seed-after` serves from


def _spool(tmp_path: Path, manifest: Manifest, content: bytes) -> tuple[object, Path]:
    ring = SpoolRing(tmp_path / "spool", manifest, slots=manifest.piece_count)
    for i, data in enumerate(pieces(content, manifest.piece_size)):
        ring.write_piece(i, data)
    return ring, tmp_path / "spool"


SOURCES = {
    "seed": _seed_file,
    "part-written": _part_written,
    "part-resumed": _part_resumed,
    "seed-after-finished": _part_finished,
    "pipe-spool": _spool,
}


@pytest.mark.parametrize("where", ["first-byte", "middle", "last-byte-of-piece"])
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_a_byte_changed_on_disk_after_verification_is_never_returned(
    tmp_path: Path, manifest: Manifest, content: bytes, source: str, where: str
) -> None:
    src, path = SOURCES[source](tmp_path, manifest, content)
    piece = 2
    at = {"first-byte": 0, "middle": PIECE // 2 + 5, "last-byte-of-piece": PIECE - 1}[where]
    try:
        assert src.read_block(piece, at, 1) == content[piece * PIECE + at :][:1]  # type: ignore[attr-defined]
        # (A verified copy held in memory would be served as it is: still the right bytes.
        # Reading another piece pushes it out of the seed's one-piece cache.)
        src.read_block(0, 0, 1)  # type: ignore[attr-defined]
        flip(path, piece * PIECE + at)
        with pytest.raises(SourceChanged, match=f"changed.*piece {piece}") as e:
            src.read_block(piece, at, 1)  # type: ignore[attr-defined]
        assert e.value.exit_code == ExitCode.IO
        with pytest.raises(SourceChanged):
            src.read_block(piece, 0, PIECE)  # type: ignore[attr-defined]
        with pytest.raises(SourceChanged):
            src.read_piece(piece)  # type: ignore[attr-defined]
        # Other pieces are untouched and still served.
        assert src.read_block(1, 100, 5000) == content[PIECE + 100 : PIECE + 5100]  # type: ignore[attr-defined]
    finally:
        src.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_a_file_cut_short_on_disk_is_noticed(
    tmp_path: Path, manifest: Manifest, content: bytes, source: str
) -> None:
    src, path = SOURCES[source](tmp_path, manifest, content)
    try:
        src.read_block(5, 0, 100)  # type: ignore[attr-defined]
        src.read_block(0, 0, 1)  # type: ignore[attr-defined]  # out of the seed's cache
        os.truncate(path, 5 * PIECE + 10)  # the last piece loses its end
        with pytest.raises(SourceChanged, match="piece 5"):
            src.read_block(5, 0, 3000)  # type: ignore[attr-defined]
    finally:
        src.close()  # type: ignore[attr-defined]


# -- item 16: hashing per byte served -----------------------------------------------------


class HashMeter:
    """Counts bytes run through SHA-256 and CRC-32 by the store, whatever its version."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bytes = 0
        meter = self
        real_ok = Manifest.piece_ok
        real_crc = zlib.crc32
        real_sha = hashlib.sha256

        def piece_ok(m: Manifest, index: int, data) -> bool:
            meter.bytes += len(data)
            return real_ok(m, index, data)

        def crc32(data, value: int = 0) -> int:
            meter.bytes += len(data)
            return real_crc(data, value)

        def sha256(data=b""):
            meter.bytes += len(data)
            return real_sha(data)

        class Zlib:
            pass

        class Hashlib:
            pass

        z, h = Zlib(), Hashlib()
        z.crc32 = crc32  # type: ignore[attr-defined]
        h.sha256 = sha256  # type: ignore[attr-defined]
        monkeypatch.setattr(Manifest, "piece_ok", piece_ok)
        monkeypatch.setattr(store_mod, "hashlib", h, raising=False)
        monkeypatch.setattr(store_mod, "zlib", z, raising=False)


def _scatter(n_pieces: int, piece: int, rounds: int, block: int) -> list[tuple[int, int, int]]:
    rng = random.Random(2)
    out = []
    for r in range(rounds):
        order = list(range(n_pieces))
        rng.shuffle(order)
        for i in order:
            aligned = r % 2 == 0  # half the rounds at odd offsets: the worst case
            off = ((r * 3 + i) % (piece // block - 1)) * block + (0 if aligned else 1234)
            out.append((i, off, block))
    return out


@pytest.mark.parametrize("source", ["seed", "seed-after-finished", "part-written"])
def test_hashing_work_is_bounded_by_the_bytes_served_not_the_piece_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    # 1 MiB pieces, a cache smaller than two pieces: scattered 16 KiB requests defeat any
    # cache of whole pieces, as a peer asking all over the file does.
    piece, block = 1024 * 1024, 16 * 1024
    content = random.Random(4).randbytes(8 * piece)
    m = make_manifest(content, piece)
    src, _ = SOURCES[source](tmp_path, m, content)
    meter = HashMeter(monkeypatch)
    served = 0
    try:
        for i, off, n in _scatter(m.piece_count, piece, rounds=16, block=block):
            assert src.read_block(i, off, n) == content[i * piece + off :][:n]  # type: ignore[attr-defined]
            served += n
    finally:
        src.close()  # type: ignore[attr-defined]
    # At most: each piece verified once (SHA-256 and its CRC table: 2x the file), then the
    # 16 KiB sub-blocks under each request (3x a block for an unaligned one).
    # (Before: a whole 1 MiB piece per 16 KiB block, 64x what was served.)
    assert meter.bytes <= 2 * len(content) + 3 * served, (meter.bytes, served)


def test_the_store_counts_its_own_hashing(tmp_path: Path, manifest: Manifest, content: bytes):
    src, _ = _part_written(tmp_path, manifest, content)
    try:
        before = src.bytes_hashed  # type: ignore[attr-defined]
        assert before == len(content)  # the CRC tables made while writing
        src.read_block(1, 0, 16 * 1024)  # type: ignore[attr-defined]
        assert src.bytes_hashed == before + 16 * 1024  # type: ignore[attr-defined]
    finally:
        src.close()  # type: ignore[attr-defined]


# -- item 17: the pipe spool holds the read-ahead window only -----------------------------


def test_the_pipe_spool_never_grows_past_its_window(tmp_path: Path) -> None:
    piece, slots = 16 * 1024, 8
    content = random.Random(6).randbytes(100 * piece + 77)
    m = make_manifest(content, piece)
    ring = SpoolRing(tmp_path / "spool", m, slots)
    try:
        assert os.stat(tmp_path / "spool").st_mode & 0o777 == 0o600
        data = pieces(content, piece)
        written = 0
        biggest = 0
        for i in range(m.piece_count):
            # The downloader runs as far ahead as the window allows, the reader follows.
            while written < m.piece_count and written < i + slots:
                ring.write_piece(written, data[written])
                written += 1
            biggest = max(biggest, os.stat(tmp_path / "spool").st_size)
            assert ring.has(i) and ring.read_piece(i) == data[i]
            ring.release(i)
            assert not ring.has(i)  # gone: never offered to or served to a peer
        assert biggest <= slots * piece
        with pytest.raises(RuntimeError, match="outside the spool window"):
            ring.write_piece(0, data[0])
    finally:
        ring.close()
    assert not ring.keeps_pieces and PartFile.keeps_pieces and SeedFile.keeps_pieces


# == end to end: real p2p processes, real WebRTC over loopback, real signaling ============

def run(procs: Procs, command: str, link: str, *extra: str, human: bool, name: str, **kw):
    mode = [] if human else ["--json"]
    more = ["--player", "none"] if command == "stream" else []
    return procs.p2p(command, link, *LOOPBACK, *mode, *more, *extra, name=name, **kw)


def done(proc, timeout: float = 120) -> dict:
    return proc.wait_for(
        lambda p: next((e for e in p.events() if e["event"] == "done"), None), timeout, "done"
    )


def srcdir(procs: Procs) -> Path:
    d = procs.workdir / "src"
    d.mkdir(exist_ok=True)
    return d


E2E_PART_KINDS = ["symlink-to-file", "symlink-dangling", "directory", "fifo", "hardlink"]
E2E_FINAL_KINDS = ["symlink-dangling", "fifo", "symlink-to-file"]


def test_fetch_and_stream_never_write_through_entries_they_did_not_make(
    procs: Procs, signal_url: str
):
    src = make_file(srcdir(procs) / "movie.bin", 200_000)
    _, link = procs.seed(src, signal_url)
    w = procs.workdir
    cases = [(".part", k) for k in E2E_PART_KINDS] + [("final", k) for k in E2E_FINAL_KINDS]
    # Every case has its own output and victim, so the commands of all cases run at once
    # (one after another they were ~25 process start-ups in a row: 22 s).
    started = []
    for n, (which, kind) in enumerate(cases):
        out, victim = w / f"out{n}.bin", w / f"victim{n}"
        entry = out.with_name(out.name + ".part") if which == ".part" else out
        ENTRIES[kind](entry, victim)
        # Every command, in human mode and --json: one line, exit 2, nothing written.
        runs = [("fetch", False), ("fetch", True)]
        if n in (0, len(E2E_PART_KINDS)):
            runs.append(("stream", True))
        for command, human in runs:
            p = run(procs, command, link, "-o", str(out), human=human,
                    name=f"{command}-{which}-{kind}-{'human' if human else 'json'}")
            started.append((p, which, kind, out, victim))
    for p, which, kind, out, victim in started:
        line = one_line_error(p, 2)
        assert out.name in line and ("--force" in line or "directory" in line), line
        victim_intact(kind, victim)
        assert not out.exists() or which == "final"
    forced = []
    for n, (which, kind) in enumerate(cases):
        if kind == "directory":
            continue
        # --force replaces the entry itself; whatever it pointed to is untouched.
        out, victim = w / f"out{n}.bin", w / f"victim{n}"
        entry = out.with_name(out.name + ".part") if which == ".part" else out
        p = run(procs, "fetch", link, "-o", str(out), "--force", human=False,
                name=f"force-{which}-{kind}")
        forced.append((p, which, kind, out, victim, entry))
    for p, which, kind, out, victim, entry in forced:
        assert p.wait(90) == 0, p.stderr
        assert sha256(out) == sha256(src) and not out.is_symlink()
        assert not entry.exists() or which == "final"
        victim_intact(kind, victim)


LONG_NAMES = {
    "ascii-255": "a" * 251 + ".bin",
    "2-byte-255": "é" * 125 + "x.bin",
    "3-byte-254": "日" * 83 + "x.bin",
    "4-byte-255": "😀" * 62 + "xyz.bin",
}


def test_names_up_to_255_bytes_download_under_their_own_name(procs: Procs, signal_url: str):
    # Every name's seeder, then every name's download, at once (one after another: 9.6 s).
    seeders = []
    for i, (label, name) in enumerate(LONG_NAMES.items()):
        assert 250 < len(name.encode()) <= 255, label
        src = make_file(srcdir(procs) / name, 100_000 + i)
        seeders.append(procs.p2p("seed", str(src), *LOOPBACK, "--json", "--signal", signal_url,
                                 name=f"seed-{label}"))
    downloads = []
    for i, ((label, name), seeder) in enumerate(zip(LONG_NAMES.items(), seeders, strict=True)):
        link = seeder.wait_for(lambda p: p.stdout.strip(), 60, "the link").splitlines()[0]
        human = i % 2 == 1
        if i < len(LONG_NAMES) - 1:
            f = run(procs, "fetch", link, "-o", name, human=human, name=f"fetch-{label}")
        else:  # stream writes under the sender's name in the current directory
            f = run(procs, "stream", link, human=False, name=f"stream-{label}")
        downloads.append(f)
    for i, ((label, name), f) in enumerate(zip(LONG_NAMES.items(), downloads, strict=True)):
        if i < len(LONG_NAMES) - 1:
            assert f.wait(90) == 0, f.stderr  # before: exit 6, "File name too long"
        else:
            done(f)
            f.signal(signal.SIGINT)
            f.wait(30)
        assert sha256(procs.workdir / name) == sha256(srcdir(procs) / name), label
    assert not [p for p in procs.workdir.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize("human", [False, True], ids=["json", "human"])
def test_seed_after_never_sends_bytes_changed_on_disk_and_stops(
    procs: Procs, signal_url: str, human: bool
):
    src = make_file(srcdir(procs) / "movie.bin", 2 * 1024 * 1024)  # 128 pieces of 16 KiB
    seeder, link = procs.seed(src, signal_url)
    out = procs.workdir / "first.bin"
    f1 = procs.fetch(link, "-o", str(out), "--seed-after", "--timeout", "60", name="first")
    done(f1)
    # The original seeder goes: the second fetcher can ask only the first for pieces (it
    # was a seeder slowed to 200 kB/s, which made the test wait 10 s for each fetch).
    seeder.kill()
    for i in range(0, 2 * 1024 * 1024, 16 * 1024):  # one byte changed in every piece
        flip(out, i + 100)
    f2 = run(procs, "fetch", link, "-o", "second.bin", "--timeout", "60", human=human,
             name="second")
    # The first noticed, sent nothing changed, and stopped with one line and exit 6.
    line = one_line_error(f1, 6)
    assert "changed on disk" in line and "first.bin" in line
    # Then a seeder is back and the second fetch finishes from it.
    procs.seed(src, signal_url, name="seed-again")
    assert f2.wait(180) == 0, f2.stderr
    assert sha256(procs.workdir / "second.bin") == sha256(src)
    if not human:
        assert not [e for e in f2.events() if e["event"] == "piece-rejected"], f2.stderr


def test_a_peer_asking_for_scattered_blocks_costs_hashing_near_what_it_is_sent(
    procs: Procs, signal_url: str
):
    src = make_file(srcdir(procs) / "movie.bin", 33 * 1024 * 1024)  # 64 KiB pieces
    seeder, link = procs.seed(src, signal_url)
    f1 = procs.fetch(link, "-o", "first.bin", "--seed-after", "--timeout", "60", name="first")
    done(f1)
    seeder.kill()  # only the fetcher is left to serve

    def progress_after_done(p) -> list[dict]:
        # Not a progress event from before `done`: the pieces verified after it were still
        # being written (and their checks made) then, which is not serving's cost.
        events = p.events()
        at = next(i for i, e in enumerate(events) if e["event"] == "done")
        return [e for e in events[at:] if e["event"] == "progress" and "hashed" in e][-1:]

    before = f1.wait_for(progress_after_done, 30, "progress")[0]
    peer = procs.start([sys.executable, str(ROOT / "tests/helpers/scatter_peer.py"), signal_url,
                        str(src), "2", str(16 * 1024)], "scatter")
    result = json.loads(peer.wait_for(lambda p: p.stdout.strip(), 120, "scatter result"))
    assert result["bad"] == 0 and result["rejected"] == 0 and result["received"] > 0, result
    n = len([e for e in f1.events() if e["event"] == "progress"])
    f1.wait_for(lambda p: len([e for e in p.events() if e["event"] == "progress"]) > n + 1, 10,
                "progress")
    after = [e for e in f1.events() if e["event"] == "progress"][-1]
    sent, hashed = after["sent"] - before["sent"], after["hashed"] - before["hashed"]
    assert sent >= result["received"]
    # Unaligned 16 KiB blocks are checked by the two 16 KiB sub-blocks under them; a whole
    # 64 KiB piece per block would be 4x.
    assert hashed <= 2 * sent + 64 * 1024, (hashed, sent)


def _disk_use(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            with contextlib.suppress(FileNotFoundError):  # the ring may go meanwhile
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total


def test_a_pipe_download_spools_no_more_than_its_read_ahead_window(
    procs: Procs, signal_url: str
):
    size = 64 * 1024 * 1024  # 64 KiB pieces: the window is 512 pieces, 32 MiB
    src = make_file(srcdir(procs) / "movie.bin", size)
    _, link = procs.seed(src, signal_url)
    tmp = procs.workdir / "tmpdir"
    tmp.mkdir()
    env = dict(procs.env, TMPDIR=str(tmp))
    f = procs.fetch(link, "-o", "-", name="pipe", stdout=subprocess.PIPE, env=env)
    assert f.p.stdout is not None
    h = hashlib.sha256()
    biggest = 0
    while True:  # a slow reader: the download runs ahead as far as it may
        chunk = f.p.stdout.read(1024 * 1024)
        if not chunk:
            break
        h.update(chunk)
        biggest = max(biggest, _disk_use(tmp))
    f.p.stdout.close()
    assert f.wait(60) == 0, f.stderr
    assert h.hexdigest() == sha256(src)
    assert 0 < biggest <= 32 * 1024 * 1024 + 64 * 1024, biggest  # before: the whole 64 MiB
    assert list(tmp.iterdir()) == []  # and it is gone afterwards


@pytest.mark.parametrize("human", [False, True], ids=["json", "human"])
def test_seed_after_with_a_pipe_output_is_refused(procs: Procs, human: bool):
    p = run(procs, "fetch", "ab" * 32, "-o", "-", "--seed-after", "--signal",
            "http://127.0.0.1:9", human=human, name="refused")
    assert "-o FILE" in one_line_error(p, 2)


def test_a_new_part_file_costs_no_hashing_to_open(tmp_path: Path, manifest: Manifest) -> None:
    """A fresh download has nothing to resume: opening it must not read and hash the whole
    (sparse, full-size) file, which cost every fetch a SHA-256 pass over nothing."""
    part = PartFile(tmp_path / "movie.bin.part", manifest)
    assert part.scan() == [] and part.bytes_hashed == 0
    part.close()
    again = PartFile(tmp_path / "movie.bin.part", manifest)  # ours, so it resumes: a scan
    assert again.scan() == [] and again.bytes_hashed == manifest.size
    again.close()
