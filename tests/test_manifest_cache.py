"""The manifest cache is bounded (issue 16, rough edge 9): every edited or moved file left an
entry nothing would read again, and the cache only grew."""

from __future__ import annotations

import os
from pathlib import Path

from p2pcli import manifestcache
from p2pcli.hashing import cache_dir, hash_file
from p2pcli.manifestcache import STALE_TMP, prune_plan


def test_least_recently_used_go_first_beyond_the_entry_bound() -> None:
    entries = [(f"{i}.manifest", 10, float(i)) for i in range(5)]
    assert sorted(prune_plan(entries, 10.0, max_entries=3)) == ["0.manifest", "1.manifest"]


def test_least_recently_used_go_first_beyond_the_byte_bound() -> None:
    entries = [("old.manifest", 60, 1.0), ("new.manifest", 60, 3.0), ("mid.manifest", 60, 2.0)]
    assert prune_plan(entries, 10.0, max_bytes=130) == ["old.manifest"]


def test_abandoned_temporaries_go_and_fresh_ones_stay() -> None:
    entries = [("a.tmp123", 5, 0.0), ("b.tmp456", 5, STALE_TMP * 2 - 1), ("c.manifest", 5, 0.0)]
    assert prune_plan(entries, STALE_TMP * 2) == ["a.tmp123"]


def test_crc_tables_are_kept_beside_their_manifest_not_taken_for_temporaries() -> None:
    entries = [("a.checks", 5, 0.0), ("a.manifest", 5, 0.0), ("b.checks", 5, 1.0),
               ("b.manifest", 5, 1.0), ("c.tmp1", 5, 0.0)]
    assert prune_plan(entries, STALE_TMP * 2) == ["c.tmp1"]


def test_crc_tables_go_with_their_manifest_and_alone_they_go() -> None:
    entries = [("a.checks", 5, 0.0), ("a.manifest", 5, 0.0), ("b.checks", 5, 1.0),
               ("b.manifest", 5, 1.0), ("orphan.checks", 5, 2.0)]
    assert sorted(prune_plan(entries, 3.0, max_entries=1)) == [
        "a.checks", "a.manifest", "orphan.checks"]


def test_big_crc_tables_never_push_a_manifest_out() -> None:
    # 64 GiB files: a 128 KiB manifest and 16 MiB of tables each. Tables have a budget of
    # their own: the oldest tables go, every manifest stays (hashing again costs far more).
    entries = []
    for i in range(17):
        entries += [(f"f{i}.manifest", 128 << 10, float(i)), (f"f{i}.checks", 16 << 20, float(i))]
    doomed = prune_plan(entries, 20.0, max_checks_bytes=256 << 20)
    assert doomed == ["f0.checks"]


def test_seeding_prunes_the_cache_and_a_reuse_counts_as_use(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("P2P_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(manifestcache, "MAX_ENTRIES", 3)
    files = []
    for i in range(4):
        f = tmp_path / f"f{i}.bin"
        f.write_bytes(bytes([i]) * 1000)
        files.append(f)

    def entry(f: Path) -> Path:
        before = set(cache_dir().iterdir()) if cache_dir().exists() else set()
        hash_file(f)
        return (set(cache_dir().iterdir()) - before).pop()

    e0, e1, e2 = (entry(f) for f in files[:3])
    for e, t in ((e0, 50), (e1, 100), (e2, 200)):
        os.utime(e, (t, t))  # e0 the oldest...
    hash_file(files[0])  # ...until a cache hit marks it used
    e3 = entry(files[3])
    assert set(cache_dir().iterdir()) == {e0, e2, e3}  # e1, least recently used, went
