"""`p2p seed --torrent` in a swarm with the real WebTorrent 2.8.5 (node) and the real
bittorrent-tracker on loopback: one upload limit over both protocols, and a mixed swarm
where every downloader completes."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Procs, make_file, start_ws_tracker
from test_webtorrent_fetch import pytestmark, wt_leech, wt_seed  # noqa: F401 (the skip)

from p2pcli.magnet import parse_magnet


def seed_torrent(procs: Procs, src: Path, tracker: str, *extra: str) -> tuple[object, str, str]:
    """`p2p seed --torrent`: its stdout is the magnet link, then the p2p link."""
    seed = procs.p2p("seed", str(src), "--torrent", "--tracker", tracker, "--ice-host",
                     "127.0.0.1", "--port", "0", "--json", *extra, name="p2p-seed")
    lines = seed.wait_for(lambda p: len(p.stdout.splitlines()) >= 2 and p.stdout.splitlines(),
                          60, "both links")
    assert lines[0].startswith("magnet:?xt=urn:btih:") and lines[1].startswith("p2p://")
    return seed, lines[0], lines[1]


@pytest.mark.timeout(120)
def test_one_upload_limit_holds_over_p2p_and_bittorrent(procs: Procs) -> None:
    rate, size = 400_000, 1_000_000
    url, _ = start_ws_tracker(procs)
    src = make_file(procs.workdir / "src.bin", size, seed=11)
    seed, magnet, link = seed_torrent(procs, src, url, "--max-upload-rate", str(rate))
    got = procs.workdir / "got.bin"
    fetch = procs.fetch(link, "-o", str(got), "--timeout", "30", name="p2p-fetch")
    res = wt_leech(procs, magnet, procs.workdir / "wt")  # meanwhile: both draw on the limit
    assert fetch.wait(60) == 0, fetch.stderr
    assert got.read_bytes() == src.read_bytes()
    assert res["bytes"] == size
    assert (procs.workdir / "wt" / "src.bin").read_bytes() == src.read_bytes()

    def limits(p) -> list[dict]:
        return [e for e in p.events() if e["event"] == "upload-limit"]

    def both_served(p) -> list[dict] | None:
        ev = limits(p)
        g = ev[-1]["granted"] if ev else {}
        return ev if g.get("p2p", 0) >= size and g.get("bittorrent", 0) >= size else None

    events = seed.wait_for(both_served, 30, "an upload-limit event counting both downloads")
    # The tokens the process granted (each block waits for its own before it is sent):
    # never more than the rate has earned since the limit started, and in any stretch
    # between two reports at most one burst (a quarter second) over the rate, plus the
    # block released first in that stretch and the one released just before a report but
    # counted just after it.
    block = 64 * 1024  # p2p's largest block; BitTorrent's are 16 KiB
    prev = {"seconds": 0.0, "granted": {}}
    for e in events:
        assert e["rate"] == rate
        total = sum(e["granted"].values())
        assert total <= rate * e["seconds"]
        window = total - sum(prev["granted"].values())
        assert window <= rate * (e["seconds"] - prev["seconds"]) + rate / 4 + 2 * block
        prev = e


@pytest.mark.timeout(120)
def test_mixed_swarm_completes_everywhere(procs: Procs) -> None:
    """One WebTorrent seeder, one p2p seeder (`seed --torrent`), one p2p fetcher (magnet),
    one WebTorrent leecher: one torrent (the same info hash), every copy byte-identical."""
    url, _ = start_ws_tracker(procs)
    src = make_file(procs.workdir / "src.bin", 2_000_000, seed=12)
    wt_magnet = wt_seed(procs, src, url, piece_length=16384)
    _, magnet, _ = seed_torrent(procs, src, url)
    assert parse_magnet(magnet).info_hash == parse_magnet(wt_magnet).info_hash
    got = procs.workdir / "got.bin"
    fetch = procs.fetch(magnet, "-o", str(got), "--timeout", "30", name="p2p-fetch")
    res = wt_leech(procs, magnet, procs.workdir / "wt")
    assert fetch.wait(60) == 0, fetch.stderr
    assert got.read_bytes() == src.read_bytes()
    assert res["bytes"] == 2_000_000
    assert (procs.workdir / "wt" / "src.bin").read_bytes() == src.read_bytes()
