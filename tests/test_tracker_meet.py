"""seed and fetch meeting through a WebTorrent tracker (issue 15, rendezvous kind 1): the real
bittorrent-tracker server, real p2p processes, real WebRTC over loopback.

- A link that carries only a tracker (`tr=`) is enough: no signaling server at all.
- A tracker that is down, silent, refuses or answers garbage costs a warning, never the
  fetch, while another rendezvous works; with no other rendezvous it is one line, exit 4.
- The swarm outlives its first seeder: a `--seed-after` fetcher keeps serving newcomers
  through the tracker after the seeder (and the signaling server inside it) is gone.
"""

from __future__ import annotations

import signal
import sys
from urllib.parse import quote

import pytest
from conftest import (
    ROOT,
    Procs,
    free_port,
    make_file,
    one_line_error,
    sha256,
    start_ws_tracker,
)

from p2pcli.rendezvous import trackerclient

pytestmark = pytest.mark.timeout(120)


def events_of(proc, kind: str) -> list[dict]:
    return [e for e in proc.events() if e["event"] == kind]


def finished(proc) -> dict:
    return proc.wait_for(lambda p: next(iter(events_of(p, "done")), None), 60, "done")


def tracker_only(link: str, tracker: str) -> str:
    """`link` with its signaling URL taken out: the tracker is the only rendezvous."""
    content = link.split("://", 1)[1].split("?", 1)[0]
    return f"p2p://{content}?tr={quote(tracker, safe='')}"


def test_a_tracker_alone_is_enough_to_file_and_to_stdout(procs: Procs, tracker):
    url, _ = tracker
    src = make_file(procs.workdir / "src.bin", 3_000_000)
    seed, link = procs.seed(src, None, "--tracker", url)
    assert f"tr={quote(url, safe='')}" in link  # seed puts its tracker in the link
    seed.wait_for(lambda p: events_of(p, "announced"), 30, "the announce")
    only = tracker_only(link, url)

    f = procs.fetch(only, "-o", "out.bin", name="to-file")
    assert f.wait(60) == 0, f.stderr
    assert sha256(procs.workdir / "out.bin") == sha256(src)
    assert not events_of(f, "signaling-connected")  # no signaling server was involved
    joined = events_of(f, "peer-joined")
    assert joined and all(j["peer"].startswith("wt0:") for j in joined), joined
    assert events_of(f, "announced") == [{**events_of(f, "announced")[0], "via": "tracker",
                                          "url": url}]

    with open(procs.workdir / "piped.bin", "wb") as sink:
        p = procs.fetch(only, "-o", "-", name="to-stdout", stdout=sink)
        assert p.wait(60) == 0, p.stderr
    assert sha256(procs.workdir / "piped.bin") == sha256(src)


def bad_tracker(procs: Procs, mode: str) -> str:
    if mode == "down":
        return f"ws://127.0.0.1:{free_port()}"
    port = free_port()
    p = procs.start([sys.executable, str(ROOT / "tests/helpers/bad_tracker.py"), mode,
                     str(port)], f"bad-{mode}")
    p.wait_for(lambda p: "ready" in p.stdout, 30, "the bad tracker")
    return f"ws://127.0.0.1:{port}"


@pytest.mark.parametrize("other", ["signal", "tracker"])
@pytest.mark.parametrize("mode", ["down", "blackhole", "silent", "garbage", "refuse"])
def test_a_bad_tracker_costs_nothing_while_another_rendezvous_works(
        procs: Procs, mode: str, other: str):
    """Beside a working signaling server, or beside a working tracker alone."""
    src = make_file(procs.workdir / "src.bin", 500_000)
    if other == "signal":
        _, link = procs.seed(src, procs.serve_signal())
    else:
        good, _ = start_ws_tracker(procs)
        seed, link = procs.seed(src, None, "--tracker", good)
        seed.wait_for(lambda p: events_of(p, "announced"), 30, "the announce")
        link = tracker_only(link, good)
    bad = bad_tracker(procs, mode)
    f = procs.fetch(link, "-o", "out.bin", "--tracker", bad)
    assert f.wait(60) == 0, f.stderr
    assert sha256(procs.workdir / "out.bin") == sha256(src)
    evs = f.events()
    done = next(i for i, e in enumerate(evs) if e["event"] == "done")
    if mode in ("blackhole", "silent", "garbage"):
        # These only fail when the tracker's connect timeout runs out; the fetch finished
        # first, so it never waited for them.
        assert not [e for e in evs[:done] if e["event"] == "warning" and bad in e["message"]]
        assert trackerclient.CONNECT_TIMEOUT >= 2  # so "first" above is no race
    else:  # refused at once: said, and the fetch goes on
        warned = [e for e in evs if e["event"] == "warning" and bad in e["message"]]
        assert warned, evs


@pytest.mark.parametrize("mode", ["down", "garbage", "refuse"])
def test_with_only_a_bad_tracker_the_fetch_says_so_in_one_line(procs: Procs, mode: str):
    bad = bad_tracker(procs, mode)
    f = procs.fetch(f"p2p://{'ab' * 32}?tr={quote(bad, safe='')}", "-o", "out.bin")
    line = one_line_error(f, 4)
    assert bad in line and "tracker" in line, line
    assert {"garbage": "no tracker's answer", "refuse": "not allowed here",
            "down": "could not be reached"}[mode] in line, line
    assert not (procs.workdir / "out.bin").exists()


@pytest.mark.parametrize("where", ["flag", "link"])
@pytest.mark.parametrize("url", ["http://t.example/announce", "udp://t:6969", "ws://", "nonsense"])
def test_a_tracker_that_is_no_websocket_url_is_a_usage_error(procs: Procs, where: str, url: str):
    if where == "flag":
        args = ["fetch", "ab" * 32, "--tracker", url]
    else:
        args = ["fetch", f"p2p://{'ab' * 32}?tr={quote(url, safe='')}"]
    line = one_line_error(procs.p2p(*args, "-o", "x.bin", name="fetch"), 2)
    assert "ws:// or wss://" in line and url in line, line


def test_the_swarm_outlives_its_first_seeder_through_the_tracker(procs: Procs, tracker):
    """A seeds (embedded server + tracker), B fetches with --seed-after, A quits: C, given
    A's link, cannot reach A's server but meets B through the tracker and completes."""
    url, _ = tracker
    src = make_file(procs.workdir / "src.bin", 2_000_000)
    a, link = procs.seed(src, None, "--tracker", url, name="A")
    b = procs.fetch(link, "-o", "b.bin", "--seed-after", name="B")
    finished(b)
    b.wait_for(lambda p: events_of(p, "seeding"), 30, "B seeding")
    a.signal(signal.SIGINT)
    assert a.wait(30) == 0, a.stderr

    c = procs.fetch(link, "-o", "c.bin", name="C")
    assert c.wait(60) == 0, c.stderr
    assert sha256(procs.workdir / "c.bin") == sha256(src)
    assert not events_of(c, "signaling-connected")  # A's server went with A
    senders = [j["peer"] for j in events_of(c, "peer-joined")]
    assert senders and all(s.startswith("wt0:") for s in senders), senders


def test_a_seeder_announces_again_when_its_tracker_restarts(procs: Procs):
    url, first = start_ws_tracker(procs, name="tracker1")
    port = url.rsplit(":", 1)[1]
    src = make_file(procs.workdir / "src.bin", 300_000)
    seed, link = procs.seed(src, None, "--tracker", url)
    seed.wait_for(lambda p: len(events_of(p, "announced")) == 1, 30, "the announce")
    first.kill()  # the tracker forgets every peer
    node_args = first.args[:-1]  # node ws_tracker.mjs HOST
    again = procs.start([*node_args, "127.0.0.1", port], "tracker2")
    again.wait_for(lambda p: p.stdout.strip(), 30, "the tracker again")
    seed.wait_for(lambda p: len(events_of(p, "announced")) == 2, 60, "the announce again")
    assert any("reconnecting" in e["message"] for e in events_of(seed, "warning"))
    f = procs.fetch(tracker_only(link, url), "-o", "out.bin")
    assert f.wait(60) == 0, f.stderr
    assert sha256(procs.workdir / "out.bin") == sha256(src)


def test_the_links_of_offers_a_failed_connection_carried_are_closed(procs: Procs, monkeypatch):
    """Offers go out before the tracker answers; when it never does, their links (one
    RTCPeerConnection each) are closed with the connection, not kept until exit."""
    import asyncio

    from p2pcli.errors import SignalUnreachable
    from p2pcli.rendezvous.trackerclient import TrackerMeeting
    from p2pcli.swarm.meet import MeetHandlers

    monkeypatch.setattr(trackerclient, "CONNECT_TIMEOUT", 0.5)
    url = bad_tracker(procs, "garbage")
    made, closed = [], []

    class Link:
        async def close(self) -> None:
            closed.append(self)

    async def new_offer():
        made.append(Link())
        return made[-1], {"type": "offer", "sdp": "v=0\r\n"}

    async def nothing(*a):
        return None

    async def main() -> None:
        h = MeetHandlers(peer_list=nothing, peer_left=nothing, signal=nothing,
                         ice_config=nothing, new_offer=new_offer, adopt=nothing,
                         emit=lambda e: None)
        m = TrackerMeeting(url, bytes(32), h, prefix="wt0:",
                           stats=lambda: (None, 0, 0, True))
        with pytest.raises(SignalUnreachable, match="no tracker's answer"):
            await m.start()
        assert made and closed == made and not m.pending

    asyncio.run(main())
