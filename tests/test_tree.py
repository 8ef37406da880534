"""Folder shares (issue 16): the version-2 manifest, hostile manifests, the tree walk,
--select, and the tree store. No network: real files in tmp_path, milliseconds each."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

import pytest

from p2pcli import manifest as mf
from p2pcli.errors import ManifestError, UsageError
from p2pcli.hashing import hash_file
from p2pcli.manifest import Manifest, decode
from p2pcli.picker import Picker
from p2pcli.selection import first_video, one_file, pieces_for, select
from p2pcli.tree import TreeReader, collect, hash_tree
from p2pcli.treestore import TreePart

PIECE = 16 * 1024

# Computed with main's code before version 2 existed (commit 5f67285): a single file
# must keep its content hash, so old links keep working.
FIXTURE_HASH = "284cc4f0f583be0cb8b651e7a48dca18ce5693db40afedc85d2e5263ea57eb6d"
EMPTY_HASH = "34dc6045ddc3e9e9770e5e339d8a6025baa9b3ef32dd9d23032ccad5db12ec7f"


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("P2P_CACHE_DIR", str(tmp_path / "cache"))


def test_single_file_hash_unchanged(tmp_path: Path) -> None:
    (tmp_path / "fixture.bin").write_bytes(bytes(range(256)) * 4000 + b"x")
    (tmp_path / "empty.bin").write_bytes(b"")
    assert hash_file(tmp_path / "fixture.bin").content_id == FIXTURE_HASH
    assert hash_file(tmp_path / "empty.bin").content_id == EMPTY_HASH
    # Through the tree entry point too: one file is still a version-1 manifest.
    m, _ = hash_tree([str(tmp_path / "fixture.bin")], use_cache=False)
    assert m.version == 1 and m.content_id == FIXTURE_HASH


def make_tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "emptydir").mkdir()
    (root / "a.txt").write_bytes(b"hello\n")
    (root / "empty.bin").write_bytes(b"")
    (root / "sub" / "big.bin").write_bytes(os.urandom(3 * PIECE + 123))
    (root / "sub" / "deeper" / "x").write_bytes(b"x" * 5000)
    (root / "sub" / "link.txt").symlink_to("../a.txt")
    return root


def concat(root: Path, m: Manifest) -> bytes:
    return b"".join((root / f.path).read_bytes() for f in m.files)


def test_tree_manifest_round_trip_and_pieces_across_files(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "t")
    m, items = hash_tree([str(src)], use_cache=False)
    assert m.version == 2 and m.root == "t" and m.name == "t"
    assert [(e.path, e.size, e.folder) for e in m.entries] == [
        ("a.txt", 6, False), ("empty.bin", 0, False), ("emptydir", 0, True),
        ("sub/big.bin", 3 * PIECE + 123, False), ("sub/deeper/x", 5000, False),
        ("sub/link.txt", 6, False),  # a link to a file: shared by content, today's rule
    ]
    data = concat(src, m)
    assert m.size == len(data)
    for i, h in enumerate(m.piece_hashes):
        assert hashlib.sha256(data[i * PIECE : (i + 1) * PIECE]).digest() == h
    assert decode(m.encoded) == m
    # One thread or two, cached or not: the same hash.
    again, _ = hash_tree([str(src)], use_cache=False, workers=1)
    assert again.content_id == m.content_id
    assert hash_tree([str(src)])[0].content_id == m.content_id
    assert hash_tree([str(src)])[0].content_id == m.content_id  # from the cache
    assert TreeReader([(i.path, i.size) for i in items if not i.folder]).read(0, m.size) == data


def test_several_files_have_no_root(tmp_path: Path) -> None:
    (tmp_path / "b.bin").write_bytes(b"b")
    (tmp_path / "a.bin").write_bytes(b"a")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "c").write_bytes(b"c")
    m, _ = hash_tree([str(tmp_path / "b.bin"), str(tmp_path / "a.bin"), str(tmp_path / "d")])
    assert m.root == "" and [f.path for f in m.files] == ["a.bin", "b.bin", "d/c"]
    assert m.name == "a.bin and 2 more"


def test_empty_folder_share(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    m, _ = hash_tree([str(tmp_path / "e")])
    assert m.root == "e" and m.entries == () and m.piece_count == 0
    assert decode(m.encoded) == m


def test_walk_refusals(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "ok").write_bytes(b"1")
    (d / "loop").symlink_to(d)
    with pytest.raises(UsageError, match="symbolic link to a folder"):
        collect([str(d)])
    (d / "loop").unlink()
    (d / "dangling").symlink_to(tmp_path / "nothing")
    with pytest.raises(UsageError, match="dangling"):
        collect([str(d)])
    (d / "dangling").unlink()
    os.mkfifo(d / "fifo")
    with pytest.raises(UsageError, match="not a regular file"):
        collect([str(d)])
    (d / "fifo").unlink()
    (d / "con.txt").write_bytes(b"")
    with pytest.raises(UsageError, match="Windows device name"):
        collect([str(d)])
    (d / "con.txt").unlink()
    (d / "bad:name").write_bytes(b"")
    with pytest.raises(UsageError, match="Windows refuses"):
        collect([str(d)])
    (d / "bad:name").unlink()
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "ok").write_bytes(b"2")
    with pytest.raises(UsageError, match="would both be 'ok'"):
        collect([str(d / "ok"), str(tmp_path / "e" / "ok")])


# -- hostile manifests ---------------------------------------------------------------------


def craft(entries: list[tuple[int, bytes, int]], root: bytes = b"r", log2: int = 14,
          hashes: bytes | None = None, count: int | None = None) -> bytes:
    """Manifest bytes as an attacker would write them: no validation on the way."""
    out = [struct.pack(">4sBBH", b"P2PM", 2, log2, len(root)), root,
           struct.pack(">I", len(entries) if count is None else count)]
    for kind, path, size in entries:
        out += [struct.pack(">BH", kind, len(path)), path, struct.pack(">Q", size)]
    total = sum(s for _, _, s in entries)
    if hashes is None:
        hashes = b"\0" * 32 * (-(-total // (1 << log2)))
    return b"".join(out) + hashes


def test_walk_refuses_too_many_entries_wherever_they_are(tmp_path: Path, monkeypatch) -> None:
    # The walk counts per folder (before and after its loop), not per file: a limit of 4
    # must still refuse 5 entries however they are spread, and allow exactly 4.
    import p2pcli.tree as tree

    monkeypatch.setattr(tree, "MAX_ENTRIES", 4)
    for layout in (["a", "b", "c", "d", "e"], ["s/a", "s/b", "t/c", "t/d", "t/e"],
                   ["a", "s/b", "s/t/c", "s/t/d", "s/u"], ["a", "b", "c", "d", "e/"]):
        top = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
        for rel in layout:
            (top / rel).parent.mkdir(parents=True, exist_ok=True)
            if rel.endswith("/"):
                (top / rel).mkdir()
            else:
                (top / rel).write_bytes(b"x")
        with pytest.raises(UsageError, match="too many files"):
            collect([str(top)])
        (top / layout[-1].rstrip("/")).rmdir() if layout[-1].endswith("/") else (
            top / layout[-1]).unlink()
        assert len(collect([str(top)])[1]) == 4


@pytest.mark.parametrize("path", [
    b"..", b"../etc/passwd", b"a/../../b", b"/etc/passwd", b"a//b", b"a/", b"C:evil",
    b"a\\..\\b", b"nul", b"a/con.txt", b"trailing.", b"x\x00y", b"a/\xe2\x80\xaeexe.jpg",
    b"\xff\xfe", b".", b"a/./b",
])
def test_hostile_paths_refused(path: bytes) -> None:
    with pytest.raises(ManifestError):
        decode(craft([(0, path, 1)]))


@pytest.mark.parametrize("entries,why", [
    ([(0, b"b", 1), (0, b"a", 1)], "canonical order"),
    ([(0, b"a", 1), (0, b"a", 1)], "canonical order"),
    ([(0, b"A.txt", 1), (0, b"a.txt", 1)], "case-insensitive"),
    ([(0, b"cafe\xcc\x81", 1), (0, b"caf\xc3\xa9", 1)], "case-insensitive"),  # NFC / NFD
    ([(0, b"a", 1), (0, b"a/b", 1)], "also a folder"),
    ([(0, b"A", 1), (0, b"a/b", 1)], "also a folder"),
    ([(1, b"d", 0), (0, b"d/x", 1)], "also a folder"),
    ([(1, b"d", 5)], "has a size"),
    ([(2, b"x", 1)], "bad entry"),
])
def test_hostile_entry_lists_refused(entries, why: str) -> None:
    with pytest.raises(ManifestError, match=why):
        decode(craft(entries))


def test_hostile_sizes_and_counts_refused() -> None:
    with pytest.raises(ManifestError):
        decode(craft([(0, b"a", 1 << 49), (0, b"b", 1 << 49), (0, b"c", 1 << 49)], hashes=b""))
    with pytest.raises(ManifestError, match="more than"):
        decode(craft([], count=mf.MAX_ENTRIES + 1))
    with pytest.raises(ManifestError, match="truncated"):
        decode(craft([], count=3))
    with pytest.raises(ManifestError, match="piece hashes"):
        decode(craft([(0, b"a", 1)], hashes=b""))
    with pytest.raises(ManifestError, match="deep"):
        decode(craft([(0, b"/".join([b"d"] * 65), 1)]))
    with pytest.raises(ManifestError, match="unsupported"):
        decode(craft([(0, b"a", 1)]).replace(b"P2PM\x02", b"P2PM\x03", 1))
    ok = craft([(0, b"a", 1), (0, b"a/b/c", 0)][:1])
    assert decode(ok).files[0].path == "a"


# -- selection -----------------------------------------------------------------------------


def small_tree() -> Manifest:
    items = [("a.mkv", PIECE + 10, False), ("b.txt", 10, False), ("d", 0, True),
             ("s/c.mp4", 2 * PIECE, False)]
    total = sum(s for _, s, _ in items)
    return Manifest.create_tree("r", items, PIECE, [b"\0" * 32] * (-(-total // PIECE)))


def test_select_by_index_and_pattern() -> None:
    m = small_tree()
    assert select(m, []) == [0, 1, 2]
    assert select(m, ["1"]) == [1]
    assert select(m, ["*.mp4", "0"]) == [0, 2]
    assert select(m, ["s"]) == [2]  # a folder selects what is in it
    assert select(m, ["s/*"]) == [2]
    with pytest.raises(UsageError, match="numbered 0 to 2"):
        select(m, ["3"])
    with pytest.raises(UsageError, match="matches no file"):
        select(m, ["*.avi"])
    assert first_video(m) == 0
    assert one_file(m, ["b.txt"], "stdout").path == "b.txt"
    with pytest.raises(UsageError, match="takes one file"):
        one_file(m, ["*"], "writing to stdout (-o -)")


def test_pieces_for_selection_include_shared_pieces() -> None:
    m = small_tree()
    # a.mkv: bytes 0..PIECE+10 -> pieces 0, 1; b.txt lies in piece 1 (shared with a.mkv)
    assert pieces_for(m, [0]) == [0, 1]
    assert pieces_for(m, [1]) == [1]
    assert pieces_for(m, [2]) == [1, 2, 3]


def test_picker_skips_unselected_pieces() -> None:
    k = Picker([PIECE] * 4, PIECE)
    k.skip([0, 3])
    assert k.missing == 2 and not k.complete
    picked = {b[0] for b in k.pick("p", None, 10, 0.0)}
    assert picked == {1, 2}
    k.mark_have(1)
    k.mark_have(2)
    assert k.complete
    k.mark_have(3)  # a skipped piece that arrives anyway counts once
    assert k.complete and k.n_have == 3 and k.n_skipped == 1


# -- the tree store ------------------------------------------------------------------------


def shared_tree(tmp_path: Path) -> tuple[Path, Manifest, bytes, Path]:
    """`make_tree`'s tree, its manifest, its bytes in piece order, an empty folder for it."""
    src = make_tree(tmp_path / "t")
    m, _ = hash_tree([str(src)], use_cache=False)
    out = tmp_path / "out"
    out.mkdir()
    return src, m, concat(src, m), out


def fill(store: TreePart, m: Manifest, data: bytes) -> None:
    for i in range(m.piece_count):
        piece = data[i * m.piece_size : (i + 1) * m.piece_size]
        assert m.piece_ok(i, piece)
        store.write_piece(i, piece)


def test_tree_part_writes_the_tree_and_resumes(tmp_path: Path) -> None:
    src, m, data, out = shared_tree(tmp_path)
    st = TreePart(out, m, select(m, []))
    # Half of it, then a crash: a new store finds the pieces on disk.
    for i in range(2):
        st.write_piece(i, data[i * PIECE : (i + 1) * PIECE])
    st.close()
    again = TreePart(out, m, select(m, []))
    assert again.scan() == [0, 1]
    fill(again, m, data)
    again.finish(None, force=False)
    again.close()
    for e in m.entries:
        got = out / "t" / e.path
        if e.folder:
            assert got.is_dir() and not any(got.iterdir())
        else:
            assert got.read_bytes() == (src / e.path).read_bytes()
    assert not list(out.rglob("*.part"))
    with pytest.raises(UsageError, match="already exists"):
        TreePart(out, m, select(m, []))
    TreePart(out, m, select(m, []), force=True).close()


def test_a_tree_download_serves_its_pieces_from_threads_only(tmp_path: Path) -> None:
    # Its pieces span files: the event-loop read (one descriptor, one offset) is not for it.
    _src, m, data, out = shared_tree(tmp_path)
    st = TreePart(out, m, select(m, []))
    try:
        fill(st, m, data)
        for i in range(m.piece_count):
            assert st.checks.get(i) is not None
            assert st.read_block_nowait(i, 0, 10) is None
            assert st.read_block(i, 0, 10) == data[i * m.piece_size : i * m.piece_size + 10]
    finally:
        st.close()


def test_tree_part_selection_writes_only_selected_bytes(tmp_path: Path) -> None:
    _src, m, data, out = shared_tree(tmp_path)
    chosen = select(m, ["sub/deeper/x"])
    st = TreePart(out, m, chosen)
    assert not st.keeps_pieces
    for i in pieces_for(m, chosen):
        st.write_piece(i, data[i * PIECE : (i + 1) * PIECE])
        assert not st.has(i)  # shared with unselected files: not served
    st.finish(None, force=False)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "t/sub/deeper/x"]
    assert (out / "t/sub/deeper/x").read_bytes() == b"x" * 5000


def test_tree_part_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "t")
    m, _ = hash_tree([str(src)], use_cache=False)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (out / "t").mkdir(parents=True)
    elsewhere.mkdir()
    (out / "t" / "sub").symlink_to(elsewhere)
    with pytest.raises(UsageError, match="symbolic link"):
        TreePart(out, m, select(m, []))
    assert not any(elsewhere.iterdir())
    (out / "t" / "sub").unlink()
    (out / "t" / "sub").write_bytes(b"a file where a folder goes")
    with pytest.raises(UsageError, match="not a folder"):
        TreePart(out, m, select(m, []))
    # A final name that is a link is replaced with --force, never written through.
    (out / "t" / "sub").unlink()
    (out / "t" / "a.txt").symlink_to(elsewhere / "victim")
    with pytest.raises(UsageError, match="already exists"):
        TreePart(out, m, select(m, []))
    st = TreePart(out, m, select(m, []), force=True)
    fill(st, m, concat(src, m))
    st.finish(None, force=True)
    assert not (elsewhere / "victim").exists()
    assert (out / "t" / "a.txt").read_bytes() == b"hello\n"


# -- the page decodes the same manifests ---------------------------------------------------

HOSTILE = [
    [(0, b".."), (0, b"a")], [(0, b"/etc/passwd")], [(0, b"a/../b")], [(0, b"C:x")],
    [(0, b"b"), (0, b"a")], [(0, b"A.txt"), (0, b"a.txt")], [(0, b"a"), (0, b"a/b")],
    [(0, b"cafe\xcc\x81"), (0, b"caf\xc3\xa9")], [(0, b"nul.txt")], [(0, b"a//b")],
]


def test_the_page_decodes_folder_manifests_as_python_does(tmp_path: Path) -> None:
    import json
    import shutil
    import subprocess

    if shutil.which("node") is None:
        pytest.skip("node is not installed (scripts/test-all installs nodejs)")
    src = make_tree(tmp_path / "t")
    m, _ = hash_tree([str(src)], use_cache=False)
    (tmp_path / "x").write_bytes(b"x")
    several, _ = hash_tree([str(tmp_path / "x"), str(src / "a.txt")], use_cache=False)
    empty_dir = tmp_path / "e"
    empty_dir.mkdir()
    empty, _ = hash_tree([str(empty_dir)], use_cache=False)
    bad = [craft([(k, p, 1) for k, p in entries]) for entries in HOSTILE]
    request = {"good": [x.encoded.hex() for x in (m, several, empty)],
               "bad": [b.hex() for b in bad]}
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run(["node", str(root / "tests/js/tree_vectors.mjs")],
                       input=json.dumps(request), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for got, want in zip(out["good"], (m, several, empty), strict=True):
        assert got["name"] == want.name and got["size"] == want.size
        assert got["pieceCount"] == want.piece_count
        assert got["files"] == [{"path": f.path, "size": f.size, "offset": f.offset}
                                for f in want.files]
        assert got["folders"] == [e.path for e in want.entries if e.folder]
    for message, raw in zip(out["bad"], bad, strict=True):
        with pytest.raises(ManifestError):
            decode(raw)
        assert message, raw


def test_tree_part_from_many_threads_with_few_descriptors(tmp_path: Path, monkeypatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from p2pcli import treestore

    monkeypatch.setattr(treestore, "MAX_OPEN", 2)  # evictions all the time
    src = tmp_path / "t"
    src.mkdir()
    for i in range(30):
        (src / f"f{i:02}").write_bytes(os.urandom(3000 + 977 * i))
    m, _ = hash_tree([str(src)], use_cache=False)
    data = concat(src, m)
    out = tmp_path / "out"
    out.mkdir()
    st = TreePart(out, m, select(m, []))
    pieces = [(i, data[i * PIECE : (i + 1) * PIECE]) for i in range(m.piece_count)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: st.write_piece(*p), pieces))
        # Reads of written pieces meanwhile, as peers make them.
        got = list(pool.map(lambda p: st.read_piece(p[0]), pieces))
    assert got == [d for _, d in pieces]
    st.finish(None, force=False)
    st.close()
    for f in m.files:
        assert (out / "t" / f.path).read_bytes() == (src / f.path).read_bytes()


def test_walk_shortcut_for_plain_folders_lists_what_the_loop_lists(tmp_path: Path,
                                                                   monkeypatch) -> None:
    # A folder of only files (and links to files) is walked by map() in C loops; the same
    # items, field for field, as the per-entry loop that handles every other folder.
    import p2pcli.tree as tree

    top = tmp_path / "top"
    for rel, data in (("b.txt", b"bb"), ("a/z", b""), ("a/é.txt", b"x"), ("c/d/e", b"e"),
                      ("B", b"1")):
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_bytes(data)
    (top / "empty").mkdir()
    (top / "a" / "link").symlink_to(top / "b.txt")
    fast = collect([str(top)])
    monkeypatch.setattr(tree, "_plain_files", lambda *_: False)
    assert collect([str(top)]) == fast
    assert [i.rel for i in fast[1]] == ["B", "a/link", "a/z", "a/é.txt", "b.txt", "c/d/e",
                                        "empty"]


# Computed with main's code at 40f071c, before the walk and the reader were reworked for
# speed (session 5): how a tree is hashed may change, the content hash of a tree may not.
PINNED_TREE_HASH = "dc3f7c76fcc03a77f515efbe5c6b92da138134b54aa8e7b3e5f9b7cbc4c2eaf3"


def test_a_known_tree_keeps_its_content_hash(tmp_path: Path, monkeypatch) -> None:
    import random

    import p2pcli.hashing
    import p2pcli.tree

    rng = random.Random(16)
    top = tmp_path / "known"
    # A folder of plain files (the walk's map() path), a mixed folder with a subfolder, an
    # empty file, an empty folder, a link to a file, a non-ASCII name, and sizes that put
    # piece boundaries inside files and files inside pieces.
    for i in range(40):
        (top / "plain").mkdir(parents=True, exist_ok=True)
        (top / "plain" / f"f{i:02}.bin").write_bytes(rng.randbytes(rng.randrange(0, 3000)))
    (top / "mixed" / "deeper").mkdir(parents=True)
    (top / "mixed" / "big.bin").write_bytes(rng.randbytes(3 * PIECE + 123))
    (top / "mixed" / "deeper" / "é.txt").write_bytes(b"accent\n")
    (top / "mixed" / "empty.bin").write_bytes(b"")
    (top / "mixed" / "link").symlink_to("big.bin")
    (top / "nothing").mkdir()
    m, items = hash_tree([str(top)], use_cache=False, workers=1)
    assert m.content_id == PINNED_TREE_HASH
    assert len(items) == 45 and m.piece_count == 10
    # Two threads, each hashing runs of one piece: the path a big tree takes.
    for module in (p2pcli.hashing, p2pcli.tree):
        monkeypatch.setattr(module, "_RUN", 8 * 1024)
    assert hash_tree([str(top)], use_cache=False, workers=2)[0].content_id == PINNED_TREE_HASH
    assert hash_tree([str(top)])[0].content_id == PINNED_TREE_HASH  # written to the cache
    assert hash_tree([str(top)])[0].content_id == PINNED_TREE_HASH  # read from it


def test_tree_reader_catches_a_changed_or_missing_file_and_leaks_no_descriptor(
        tmp_path: Path) -> None:
    # Files read whole (in batches) and files a read starts or ends inside of: a file that
    # grew or shrank since it was listed, or is gone, is named; no descriptor stays open.
    sizes = [3000, 1, 5000, 700, 2048]
    files = []
    for n, size in enumerate(sizes):
        (tmp_path / f"f{n}").write_bytes(bytes([n]) * size)
        files.append((str(tmp_path / f"f{n}"), size))
    data = b"".join(bytes([n]) * size for n, size in enumerate(sizes))
    reader = TreeReader(files)
    spans = [(0, len(data)), (1000, 5500), (3000, 1), (2999, 2), (3001, 5699), (9000, 9000)]
    for pos, length in spans:
        assert reader.read(pos, length) == data[pos : pos + length]
    fds = len(os.listdir("/proc/self/fd"))
    for change, match in ((b"!", "f2 changed while"), (None, "f2 changed while"),
                          ("gone", "f2: cannot open")):
        target = tmp_path / "f2"
        if change == "gone":
            target.unlink()
        elif change is None:
            target.write_bytes(b"\2" * 4999)  # shrank
        else:
            target.write_bytes(b"\2" * 5000 + change)  # grew
        for pos, length in ((0, len(data)), (3500, 5000), (3001, 5000)):  # to f2's end
            with pytest.raises(UsageError, match=match):
                reader.read(pos, length)
    assert len(os.listdir("/proc/self/fd")) == fds


def test_the_collector_pause_is_counted_across_threads() -> None:
    # hash_tree pauses the cyclic garbage collector, process-wide, while it makes a tuple per
    # file: a second thread's pause ending first must not turn it back on, and a collector
    # that was off stays off.
    import gc
    import threading

    from p2pcli.tree import _gc_paused

    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with _gc_paused():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other)
    t.start()
    try:
        assert inside.wait(10)
        with _gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the other thread is still making its tuples
    finally:
        release.set()
        t.join(10)
    assert gc.isenabled()
    gc.disable()
    try:
        with _gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_hash_tree_items_are_what_collect_lists(tmp_path: Path) -> None:
    # hash_tree's items are made when asked for; they are collect()'s, and files() is what a
    # seeder reads (folders left out).
    src = make_tree(tmp_path / "t")
    _, items = hash_tree([str(src)], use_cache=False)
    listed = collect([str(src)])[1]
    assert items == listed and list(items) == listed and len(items) == len(listed)
    assert [items[i] for i in range(-len(items), len(items))] == listed + listed
    assert items[1:3] == listed[1:3]
    assert items.files() == [(i.path, i.size) for i in listed if not i.folder]
    _, one = hash_tree([str(src / "a.txt")], use_cache=False)
    assert one.files() == [(str(src / "a.txt"), 6)] and one[0].rel == "a.txt"
