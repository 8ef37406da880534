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


def test_crc_tables_are_entries_like_manifests_not_temporaries() -> None:
    # An old .checks file is a table a re-seed will use, not a crashed writer's leftover;
    # beyond the bounds it goes in least-recently-used order with the manifests.
    entries = [("a.checks", 5, 0.0), ("a.manifest", 5, 0.0), ("b.checks", 5, 1.0),
               ("b.manifest", 5, 1.0), ("c.tmp1", 5, 0.0)]
    assert prune_plan(entries, STALE_TMP * 2) == ["c.tmp1"]
    assert sorted(prune_plan(entries, STALE_TMP * 2, max_entries=2)) == [
        "a.checks", "a.manifest", "c.tmp1"]


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
