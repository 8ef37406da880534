"""The swarm core (p2pcli.swarm.core): a specification by scenarios, with no sockets.

Every test runs `SwarmCore`s on an in-memory network with a fake clock
(tests/helpers/swarm_sim.py): whole downloads, churn, end-game, slots and timeouts between
real cores, and each hostile case with a hand-driven peer (`Raw`) that sends exactly the
wire messages the test writes. Each takes milliseconds and runs the same way every time.
"""

from __future__ import annotations

import random
from functools import partial

import pytest

from p2pcli import events as ev
from p2pcli import wire
from p2pcli.picker import REQUEST_TIMEOUT
from p2pcli.slots import BUSY, retry_delay
from p2pcli.swarm import actions as act
from p2pcli.swarm.admission import MAX_REDIALS
from p2pcli.swarm.config import (
    HANDSHAKE_TIMEOUT_ENV,
    MANIFEST_TIMEOUT_ENV,
    REQUEST_TIMEOUT_ENV,
    handshake_timeout,
    manifest_timeout,
    request_timeout,
)
from p2pcli.swarm.core import REFUSE_GRACE, TICK
from p2pcli.swarm.diagnose import no_peers_error
from tests.helpers.swarm_sim import Net, Node, Raw, Wire, default_picker, make_manifest

KiB = 1024


def content(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def setup(size: int = 10 * 16 * KiB + 123, piece_size: int = 16 * KiB, **seed_kw):
    data = content(size)
    m = make_manifest(data, piece_size)
    net = Net()
    s = net.seeder("s", data, m, **seed_kw)
    return net, data, m, s


def open_raw(net: Net, target: Node, name: str = "raw", *, handshake: bytes | None = None,
             address: str | None = None) -> Raw:
    """A hand-driven peer connected to `target`, having sent `handshake` (if given)."""
    r = net.raw(name, address)
    r.connect(target.name)
    net.run_for(0.01)
    assert r.links[target.name].open
    if handshake is not None:
        r.send(target.name, handshake)
        net.run_for(0.01)
    return r


def requests(node: Node, peer: str) -> list[tuple[int, int, int]]:
    return [(e.piece, e.offset, e.length) for e in node.sent_to(peer, wire.BlockRequested)]


def cancels(node: Node, peer: str) -> list[tuple[int, int, int]]:
    return [(e.piece, e.offset, e.length) for e in node.sent_to(peer, wire.BlockCancelled)]


def assert_dropped_for(net: Net, node: Node, r: Raw, reason: str, *, banned: bool) -> None:
    """`node` told `r` why in a CLOSE, hung up, said so; banned: it refuses `r` from now on."""
    closes = r.got(wire.Closed, node.name)
    assert closes and reason in closes[-1].reason
    assert node.name in r.hung_up
    assert any(reason in (x or "") for x in node.left_reasons(r.name))
    if banned:
        assert any(reason in w for w in node.warnings())
        r.connect(node.name)  # it comes back under the same name: nobody answers
        net.run_for(0.1)
        assert not r.links[node.name].open


# -- downloads -------------------------------------------------------------------------------


def test_a_download_from_one_seeder_gets_every_verified_byte() -> None:
    net, data, m, s = setup()
    d = net.downloader("d", m.content_hash)
    net.join(s)
    net.join(d)
    net.run(lambda: d.complete, 10)
    assert d.content() == data
    assert [e.name for e in d.events_of(ev.Manifest)] == [m.name]
    assert sorted(e.piece for e in d.events_of(ev.PieceVerified)) == list(range(m.piece_count))
    assert all(ok for _, ok in d.verify_log)
    assert d.core.received_from == {"s": len(data)}
    assert s.core.bytes_up == len(data)
    assert d.warnings() == [] and s.warnings() == []


def test_three_seeders_with_churn_one_leaving_midway_and_another_joining() -> None:
    net, data, m, s1 = setup(size=64 * 16 * KiB)
    s1.serve_delay = 0.05
    s2 = net.seeder("s2", data, m)
    s2.serve_delay = 0.05
    d = net.downloader("d", m.content_hash)
    for n in (s1, s2, d):
        net.join(n)
    net.run(lambda: len(d.pieces) >= 16, 30)
    assert set(d.core.received_from) == {"s", "s2"}  # both give at once
    net.leave(s1)
    net.run_for(0.5)
    got_before = len(d.pieces)
    assert got_before < m.piece_count
    s3 = net.seeder("s3", data, m)
    s3.serve_delay = 0.05
    net.join(s3)
    net.run(lambda: d.complete, 60)
    assert d.content() == data
    assert d.core.received_from["s3"] > 0  # the newcomer was used
    # The one that left is no fault of its own: no warning, no ban.
    assert d.warnings() == []
    assert [p.peer for p in d.events_of(ev.PeerJoined)] == ["s", "s2", "s3"]


def test_end_game_asks_a_second_peer_for_the_last_blocks_and_cancels_the_loser() -> None:
    # One piece of four blocks: whichever peer comes second finds every block in flight.
    net, data, m, fast = setup(size=4 * 64 * KiB, piece_size=256 * KiB)
    fast.serve_delay = 0.01
    slow = net.seeder("slow", data, m)
    slow.serve_delay = 5.0
    d = net.downloader("d", m.content_hash)
    for n in (fast, slow, d):
        net.join(n)
    net.run(lambda: d.complete, 10)
    blocks = [(0, o, 64 * KiB) for o in range(0, 256 * KiB, 64 * KiB)]
    assert sorted(requests(d, "s")) == blocks
    assert sorted(requests(d, "slow")) == blocks
    assert sorted(cancels(d, "slow")) == blocks  # the first copy won, everywhere
    assert cancels(d, "s") == []
    assert d.content() == data
    assert d.verify_log == [(0, True)]
    # The slow peer's copy already being sent arrives late: counted, not an error.
    net.run_for(10)
    assert d.warnings() == [] and len(d.core.usable_peers()) == 2


# -- slots -------------------------------------------------------------------------------------


def test_a_full_swarm_answers_busy_and_the_refused_peer_retries_after_its_delay() -> None:
    net, _data, m, s = setup(size=64 * 16 * KiB, max_peers=1)
    s.serve_delay = 0.5  # d1 stays busy downloading for a while: it keeps its slot
    # Signaling alone: through d1, peer exchange would bring d2 to s first (test_pex.py).
    d1 = net.downloader("d1", m.content_hash, extensions=frozenset())
    d2 = net.downloader("d2", m.content_hash, extensions=frozenset())
    net.join(s)
    net.join(d1)
    net.run(lambda: len(d1.pieces) > 0, 10)
    net.join(d2)
    net.run_for(0.1)
    refusals = s.did(act.SignalBusy)
    assert [a.peer for _, a in refusals] == ["d2"] and refusals[0][1].reason.startswith(BUSY)
    assert [e.peer for e in s.events_of(ev.PeerRefused)] == ["d2"]
    first = d2.did(act.Connect)[0][0]
    net.run_for(retry_delay(1) + 2 * TICK)
    connects = [t for t, a in d2.did(act.Connect) if a.peer == "s"]
    assert len(connects) == 2, "the busy seeder is offered again"
    assert retry_delay(1) <= connects[1] - first <= retry_delay(1) + TICK + 0.01
    assert d2.warnings() == [] and d2.core.admission.connect_failures == 0  # busy is no failure


def test_one_address_over_its_limit_gets_a_close_and_is_hung_up_on_after_the_grace() -> None:
    net, _data, m, s = setup(max_peers_per_address=1)
    w = Wire(m)
    r1 = open_raw(net, s, "r1", handshake=w.handshake(), address="192.0.2.7")
    assert r1.got(wire.Handshake)
    r2 = open_raw(net, s, "r2", handshake=w.handshake(peer_id=b"another-peer-id!"),
                  address="192.0.2.7")
    closes = r2.got(wire.Closed)
    assert len(closes) == 1 and closes[0].reason.startswith(BUSY + "too many connections")
    assert not r2.got(wire.Handshake)  # refused before anything else
    assert [e.peer for e in s.events_of(ev.PeerRefused)] == ["r2"]
    net.run_for(REFUSE_GRACE - 0.05)
    assert r2.hung_up == []  # time to read the reason and hang up itself
    net.run_for(TICK + 0.1)  # the next tick after the grace
    assert r2.hung_up == ["s"]
    assert r1.hung_up == []


# -- timeouts ----------------------------------------------------------------------------------


def test_no_handshake_within_the_timeout_drops_and_bans_the_peer() -> None:
    net, _data, _m, s = setup()
    r = open_raw(net, s)  # opens the channel, says nothing
    net.run_for(wire.HANDSHAKE_TIMEOUT - 0.05)
    assert r.hung_up == []
    net.run_for(TICK + 0.1)  # the next tick after the deadline
    assert_dropped_for(net, s, r, f"no handshake within {wire.HANDSHAKE_TIMEOUT:g} s",
                       banned=True)


def test_an_unanswered_manifest_request_drops_the_peer_with_a_warning() -> None:
    net, _data, m, _ = setup()
    d = net.downloader("d", m.content_hash)
    r = open_raw(net, d, handshake=Wire(m).handshake())
    r.send("d", wire.encode_have_all())
    net.run_for(0.01)
    assert len(r.got(wire.ManifestRequested)) == 1
    net.run_for(wire.MANIFEST_TIMEOUT - 0.05)
    assert r.hung_up == []
    net.run_for(TICK + 0.1)
    assert_dropped_for(net, d, r, "did not answer the manifest request", banned=False)
    assert any("did not answer the manifest request" in w for w in d.warnings())


def test_a_shorter_manifest_timeout_drops_the_mute_peer_sooner() -> None:
    # SwarmConfig.manifest_timeout (P2P_MANIFEST_TIMEOUT) reaches the core's deadline.
    net, _data, m, _ = setup()
    d = net.downloader("d", m.content_hash)
    d.core.manifest_timeout = 2.0
    r = open_raw(net, d, handshake=Wire(m).handshake())
    r.send("d", wire.encode_have_all())
    net.run_for(2.0 - 0.05)
    assert r.hung_up == []
    net.run_for(TICK + 0.1)
    assert_dropped_for(net, d, r, "did not answer the manifest request", banned=False)


def test_only_help_holds_off_a_downloads_timeout_not_handshakes() -> None:
    # Peers that connect, handshake and hang up, again and again (a busy swarm's other
    # peers, a peer that rejoins), are no help: `--timeout`'s clock runs on through them.
    # Manifest bytes are help: the clock restarts, and holds while their sender stays.
    net, _data, m, _ = setup()
    d = net.downloader("d", m.content_hash)
    w, start = Wire(m), net.now
    for i in range(4):
        r = open_raw(net, d, f"r{i}", handshake=w.handshake(peer_id=b"hang-up-peer-%03d" % i))
        assert r.got(wire.Handshake)
        r.hang_up("d")
        net.run_for(2.0)
    assert d.core.idle_for(net.now) == pytest.approx(net.now - start)
    why = no_peers_error(d.core, 6, []).message
    assert "found 4 peers" in why and "they connected, then hung up or gave nothing" in why
    giver = open_raw(net, d, "giver", handshake=w.handshake(peer_id=b"giver-peer-id-01"))
    giver.send("d", wire.encode_have_all())
    giver.send("d", w.manifest_data())
    net.run_for(5.0)  # it sends no block, but is not dropped yet (the request timeout)
    assert d.core.manifest is not None and "giver" in d.core.peers
    assert d.core.idle_for(net.now) == 0
    giver.hang_up("d")
    net.run_for(3.0)
    assert 3.0 <= d.core.idle_for(net.now) <= 3.0 + TICK


@pytest.mark.parametrize("churn", ["blip", "evicted"])
def test_a_paused_reader_does_not_time_out_while_a_peer_has_the_rest(churn: str) -> None:
    # `fetch -o -` with a paused reader, or a paused player: the read-ahead window is full,
    # so we ask nobody for anything. A peer that connects then (the seeder after a blip, or
    # a newcomer after our slot logic dropped the idle ones) cannot help until the reader
    # moves, and must hold `--timeout`'s clock as one that sent a block would.
    data = content(12 * 16 * KiB)
    m = make_manifest(data, 16 * KiB)
    net = Net()
    window = partial(default_picker, sequential=True, window=2)
    if churn == "blip":
        seeds = [net.seeder("s", data, m)]
        d = net.downloader("d", m.content_hash, picker=window)
    else:
        seeds = [net.seeder(f"s{i}", data, m) for i in range(4)]
        d = net.downloader("d", m.content_hash, max_peers=2, picker=window)
    for s in seeds:
        net.join(s)
    net.join(d)
    d.core.wait_from(net.now)
    net.run(lambda: len(d.pieces) == 2, 10)
    if churn == "blip":
        net.run_for(3.0)
        net.cut("s", "d")
    for _ in range(40):
        net.run_for(1.0)
        assert d.core.idle_for(net.now) < 10.0, sorted(d.core.peers)
    assert sorted(d.pieces) == [0, 1] and d.core.usable_peers()


def test_silent_peers_arriving_one_by_one_do_not_hold_a_pipes_timeout_for_ever() -> None:
    # The paused-reader rule must not let a peer that was asked and never answers hold the
    # clock: its blocks are in flight, not received, so the window is not "waiting for the
    # reader". Peers that claim everything and answer nothing, one after another, end a
    # pipe download at its timeout as they end a download to a file.
    data = content(12 * 16 * KiB)
    m = make_manifest(data, 16 * KiB)
    net = Net()
    s = net.seeder("s", data, m)
    d = net.downloader("d", m.content_hash,
                       picker=partial(default_picker, sequential=True, window=4))
    net.join(s)
    net.join(d)
    d.core.wait_from(net.now)
    net.run(lambda: len(d.pieces) >= 4, 30)
    net.leave(s)
    net.run_for(0.5)
    d.core.set_cursor(len(d.pieces) - 1, net.now)  # the reader takes some: room to ask
    worst = 0.0
    for i in range(4):
        r = open_raw(net, d, f"junk{i}",
                     handshake=Wire(m, peer_id=b"junk-peer-id-%04d" % i).handshake())
        r.send("d", wire.encode_have_all())
        for _ in range(9):
            net.run_for(1.0)
            worst = max(worst, d.core.idle_for(net.now))
    assert worst > 30.0


def test_a_peer_dropped_before_later_help_is_not_named_for_a_later_timeout() -> None:
    data = content(64 * 16 * KiB)
    m = make_manifest(data, 16 * KiB)
    net = Net()
    s1 = net.seeder("s1", data, m)
    s1.serving_stalled = True
    d = net.downloader("d", m.content_hash)
    net.join(s1)
    net.join(d)
    net.run(lambda: "s1" not in d.core.peers, 30)
    assert "stopped answering requests" in d.left_reasons("s1")
    s2 = net.seeder("s2", data, m)
    s2.serve_delay = 0.05
    net.join(s2)
    d.core.admission.peer_listed("s2", net.now)
    net.run(lambda: len(d.pieces) >= 8, 60)
    net.leave(s2)
    net.run_for(7.0)
    why = no_peers_error(d.core, 6, []).message
    assert "all peers left" in why and "stopped answering" not in why, why


@pytest.mark.parametrize(("value", "seconds"), [
    (None, wire.MANIFEST_TIMEOUT), ("3", 3.0), ("0.5", 0.5),
    ("0", wire.MANIFEST_TIMEOUT), ("-1", wire.MANIFEST_TIMEOUT), ("soon", wire.MANIFEST_TIMEOUT),
])
def test_the_timeout_knobs_take_positive_seconds_only(value, seconds) -> None:
    env = {} if value is None else {MANIFEST_TIMEOUT_ENV: value}
    assert manifest_timeout(env) == seconds
    env = {} if value is None else {REQUEST_TIMEOUT_ENV: value}
    default = seconds == wire.MANIFEST_TIMEOUT
    assert request_timeout(env) == (REQUEST_TIMEOUT if default else seconds)
    assert request_timeout({MANIFEST_TIMEOUT_ENV: "3"}) == REQUEST_TIMEOUT
    env = {} if value is None else {HANDSHAKE_TIMEOUT_ENV: value}
    assert handshake_timeout(env) == (wire.HANDSHAKE_TIMEOUT if default else seconds)


def test_requests_nobody_answers_are_cancelled_and_the_silent_peer_dropped() -> None:
    net, _data, m, s = setup()
    s.serving_stalled = True  # takes every request, answers none
    d = net.downloader("d", m.content_hash)
    net.join(s)
    net.join(d)
    net.run(lambda: requests(d, "s") != [], 5)
    asked = requests(d, "s")
    took = net.run(lambda: d.left_reasons("s") != [], 30)
    timeout = d.core.picker.request_timeout
    assert timeout <= took <= timeout + TICK + 0.01  # at the first tick past the timeout
    assert d.left_reasons("s") == ["stopped answering requests"]
    assert set(cancels(d, "s")) == set(asked)
    assert any("stopped answering requests" in w for w in d.warnings())
    net.run_for(0.1)
    assert s.events_of(ev.PeerLeft)[-1].peer == "d"  # it heard the CLOSE and let go too
    assert s.warnings() == []
    # At --timeout, the error says what became of the seeder (not "all peers left"), and
    # claims no partial download: not one piece came.
    why = no_peers_error(d.core, 6, []).message
    assert "1 peer with the missing pieces stopped answering our requests and was dropped" \
        in why, why
    assert "partial download" not in why and "kept" not in why, why


def test_what_a_timed_out_download_says_is_kept_depends_on_pieces_and_the_pipe() -> None:
    # A partial download is kept, and resumed by running the command again, only when some
    # piece came and it goes to a file: to stdout (download.writes_stdout) nothing is.
    net, _data, m, s = setup(size=64 * 16 * KiB)
    s.serve_delay = 0.05
    net.join(s)
    d = net.downloader("d", m.content_hash)
    net.join(d)
    net.run(lambda: len(d.pieces) >= 8, 30)
    net.leave(s)
    net.run_for(7.0)
    assert d.core.idle_for(net.now) > 6
    to_file = no_peers_error(d.core, 6, []).message
    assert "all peers left" in to_file and "the partial download is kept" in to_file, to_file
    to_pipe = no_peers_error(d.core, 6, [], pipe=True).message
    assert "kept, " not in to_pipe and "nothing is kept of a download to stdout" in to_pipe


def test_a_peer_yet_to_send_the_manifest_is_named_so_and_holds_no_timeout_off() -> None:
    # Still connected, our manifest request pending: not "hung up or gave nothing", and its
    # pending request does not hold --timeout's clock.
    net, _data, m, _ = setup()
    d = net.downloader("d", m.content_hash)
    d.core.manifest_timeout = 60.0
    start = net.now
    r = open_raw(net, d, handshake=Wire(m).handshake())
    r.send("d", wire.encode_have_all())
    net.run_for(7.0)
    assert r.got(wire.ManifestRequested) and "raw" in d.core.peers
    assert d.core.idle_for(net.now) == pytest.approx(net.now - start)
    why = no_peers_error(d.core, 6, []).message
    assert "found 1 peer" in why and "it connected and has not sent the manifest yet" in why
    assert "hung up" not in why, why


# -- hostile peers -----------------------------------------------------------------------------


def test_an_unrequested_piece_is_a_protocol_error() -> None:
    net, data, m, _ = setup()
    d = net.downloader("d", m.content_hash)
    w = Wire(m)
    r = open_raw(net, d, handshake=w.handshake())
    r.send("d", w.piece(data, 0, 0, 16 * KiB))
    net.run_for(0.01)
    assert_dropped_for(net, d, r, "unrequested data for piece 0", banned=True)


def test_a_manifest_that_does_not_match_the_hash_is_rejected_and_its_sender_banned() -> None:
    net, data, m, _ = setup()
    other = make_manifest(content(len(data), seed=2))
    d = net.downloader("d", m.content_hash)
    r = open_raw(net, d, handshake=Wire(m).handshake())
    r.send("d", wire.encode_have_all())
    net.run_for(0.01)
    [req] = r.got(wire.ManifestRequested)
    r.send("d", Wire(other).manifest_data(req.offset, req.length))
    net.run_for(0.01)
    [rej] = d.events_of(ev.ManifestRejected)
    assert rej.peer == "raw"
    assert d.core.manifest is None and not d.did(act.OpenStore)
    assert_dropped_for(net, d, r, "sent a bad manifest", banned=True)


def test_a_corrupt_piece_from_one_peer_alone_bans_it_at_once() -> None:
    net, data, m, bad = setup()
    bad.corrupt = {3}
    d = net.downloader("d", m.content_hash)
    net.join(bad)
    net.join(d)
    net.run(lambda: d.events_of(ev.PieceRejected) != [], 10)
    net.run_for(0.1)
    [rej] = d.events_of(ev.PieceRejected)
    assert (rej.piece, rej.peers) == (3, ["s"])
    assert any("sent corrupt data for piece 3" in w for w in d.warnings())
    assert 3 not in d.pieces
    got = d.core.received_from["s"]
    good = net.seeder("good", data, m)
    net.join(good)
    net.join(bad)  # it offers again: the downloader does not take it back
    net.run(lambda: d.complete, 30)
    assert d.content() == data
    assert d.core.received_from["s"] == got
    assert [p.peer for p in d.events_of(ev.PeerJoined)] == ["s", "good"]


def _shared_failure(net: Net, d: Node, r1: Raw, r2: Raw, data: bytes, w: Wire) -> None:
    """Piece 0 (two blocks) assembled from r1's corrupt first block and r2's good second."""
    half = 64 * KiB
    r1_asked = {(e.piece, e.offset, e.length) for e in r1.got(wire.BlockRequested)}
    r2_asked = {(e.piece, e.offset, e.length) for e in r2.got(wire.BlockRequested)}
    assert (0, 0, half) in r1_asked and (0, half, half) in r2_asked
    bad = bytearray(w.piece(data, 0, 0, half))
    bad[-1] ^= 1
    r1.send("d", bytes(bad))
    r2.send("d", w.piece(data, 0, half, half))
    r1.inbox.clear()
    r2.inbox.clear()
    net.run_for(0.01)


def test_shared_blame_drops_a_peer_only_at_its_third_strike() -> None:
    # A window of one piece keeps both peers on piece 0: the first asked gets both blocks,
    # the second is asked for both again (end-game), and each answers one.
    net, data, m, _ = setup(size=4 * 128 * KiB, piece_size=128 * KiB)
    picker = partial(default_picker, sequential=True, window=1)
    d = net.downloader("d", m.content_hash, picker=picker)
    w = Wire(m)
    r1 = open_raw(net, d, "r1", handshake=w.handshake(peer_id=b"r1".ljust(16)))
    r2 = open_raw(net, d, "r2", handshake=w.handshake(peer_id=b"r2".ljust(16)))
    for r in (r1, r2):
        r.send("d", wire.encode_have_all())
    net.run_for(0.01)
    [req] = r1.got(wire.ManifestRequested)
    r1.send("d", w.manifest_data(req.offset, req.length))
    net.run_for(0.01)
    for strike in (1, 2):
        _shared_failure(net, d, r1, r2, data, w)
        assert [(e.piece, e.peers) for e in d.events_of(ev.PieceRejected)][-1] == (
            0, ["r1", "r2"])
        assert len(d.events_of(ev.PieceRejected)) == strike
        assert d.warnings() == [] and r1.hung_up == r2.hung_up == []
    _shared_failure(net, d, r1, r2, data, w)
    assert len(d.events_of(ev.PieceRejected)) == 3
    for r in (r1, r2):  # each had a hand in three bad pieces
        assert_dropped_for(net, d, r, "sent corrupt data for piece 0", banned=True)


def test_a_peer_rejecting_pieces_its_bitfield_claims_is_dropped_as_a_liar() -> None:
    net, _data, m, _ = setup(size=20 * 16 * KiB)
    d = net.downloader("d", m.content_hash)
    w = Wire(m)
    r = open_raw(net, d, handshake=w.handshake())
    r.send("d", wire.encode_have_all())
    net.run_for(0.01)
    [req] = r.got(wire.ManifestRequested)
    r.send("d", w.manifest_data(req.offset, req.length))
    net.run_for(0.01)
    refused: list[int] = []
    while not r.hung_up:  # one REJECT at a time, each for the oldest request
        [e, *_] = r.got(wire.BlockRequested)
        assert e.piece not in refused  # never asked again for a piece it refused
        del r.inbox[[x for _, x in r.inbox].index(e)]
        refused.append(e.piece)
        r.send("d", wire.encode_reject(e.piece, e.offset, e.length))
        net.run_for(0.01)
    assert len(refused) == wire.MAX_REFUSALS + 1
    assert_dropped_for(net, d, r, "lying bitfield", banned=True)


def test_a_request_flood_is_a_protocol_error_at_one_past_the_queue_limit() -> None:
    net, _data, m, s = setup()
    s.serving_stalled = True  # every request stays queued
    w = Wire(m)
    r = open_raw(net, s, handshake=w.handshake())
    r.send("s", wire.encode_bitfield(bytes(wire.bitfield_bytes(m.piece_count))))
    block = wire.encode_request(0, 0, 1024)
    for _ in range(wire.MAX_QUEUED_REQUESTS):
        r.send("s", block)
    net.run_for(0.01)
    assert r.hung_up == []
    r.send("s", block)
    net.run_for(0.01)
    assert_dropped_for(net, s, r, "request flood", banned=True)


HOSTILE_FIRST_MESSAGES = {
    "text": ("hello", "text message on the binary protocol channel"),
    "oversized": (bytes([wire.MsgType.PIECE]) + bytes(wire.MAX_MESSAGE), "exceeds 256 KiB"),
    "other content": (wire.encode_handshake(b"x" * 32, b"p" * 16, wire.DEFAULT_MAX_BLOCK),
                      "different content"),
    "our own id": (None, "connected to ourselves"),
    "no handshake first": (wire.encode_have_all(), "first message was not a handshake"),
}


@pytest.mark.parametrize("case", HOSTILE_FIRST_MESSAGES)
def test_a_hostile_first_message_drops_and_bans_the_peer(case: str) -> None:
    net, _data, m, s = setup()
    msg, reason = HOSTILE_FIRST_MESSAGES[case]
    if msg is None:  # our own handshake, echoed back (we connected to ourselves)
        msg = Wire(m).handshake(peer_id=s.core.peer_id)
    r = open_raw(net, s)
    r.send("s", msg)
    net.run_for(0.01)
    assert_dropped_for(net, s, r, reason, banned=True)


def test_a_hostile_message_after_the_handshake_drops_and_bans_the_peer() -> None:
    net, _data, m, s = setup()
    r = open_raw(net, s, handshake=Wire(m).handshake())
    assert r.got(wire.HaveAllReceived)
    r.send("s", b"\x00" * (wire.MAX_MESSAGE + 1))
    net.run_for(0.01)
    assert_dropped_for(net, s, r, "exceeds 256 KiB", banned=True)


# -- what is requested: the pipe's window and a player's priority ------------------------------


def test_a_pipe_window_requests_only_up_to_the_cursor_and_moves_with_it() -> None:
    net, _data, m, s = setup(size=12 * 16 * KiB)
    d = net.downloader("d", m.content_hash,
                      picker=partial(default_picker, sequential=True, window=2))
    net.join(s)
    net.join(d)
    net.run(lambda: len(d.pieces) == 2, 10)
    net.run_for(5)
    assert sorted(d.pieces) == [0, 1]
    assert {p for p, _, _ in requests(d, "s")} == {0, 1}
    d.core.set_cursor(2, net.now)  # the reader took pieces 0 and 1
    net.run(lambda: len(d.pieces) == 4, 10)
    net.run_for(5)
    assert sorted(d.pieces) == [0, 1, 2, 3]
    assert {p for p, _, _ in requests(d, "s")} == {0, 1, 2, 3}


def test_a_strict_priority_cancels_requests_outside_it_and_asks_for_it_first() -> None:
    net, data, m, s = setup(size=24 * 16 * KiB)
    s.serve_delay = 1.0  # requests stay in flight a while
    d = net.downloader("d", m.content_hash,
                      picker=partial(default_picker, sequential=True, strict_priority=True))
    net.join(s)
    net.join(d)
    net.run(lambda: len(requests(d, "s")) >= 8, 10)
    in_flight = requests(d, "s")  # none answered yet
    assert d.pieces == {} and 20 not in {p for p, _, _ in in_flight}
    n_sent = len(d.sent_to("s"))
    d.core.set_priority([20], net.now)  # a player seeks to piece 20
    net.drain()
    after = d.sent_to("s")[n_sent:]
    cancelled = [(e.piece, e.offset, e.length) for e in after if isinstance(e, wire.BlockCancelled)]
    asked = [e.piece for e in after if isinstance(e, wire.BlockRequested)]
    assert set(cancelled) == set(in_flight) and asked == [20]
    assert after.index(next(e for e in after if isinstance(e, wire.BlockRequested))) == len(
        cancelled)  # the cancels go first: they free the link for the urgent piece
    net.run(lambda: 20 in d.pieces, 10)
    assert d.pieces[20] == data[20 * 16 * KiB : 21 * 16 * KiB]
    net.run(lambda: d.complete, 60)  # with the priority met, the rest follows
    assert d.content() == data


# -- connections lost without a CLOSE ----------------------------------------------------------


def connects(node: Node, peer: str) -> list[float]:
    return [t for t, a in node.did(act.Connect) if a.peer == peer]


def test_a_download_redials_a_seeder_whose_link_broke_without_a_close_and_completes() -> None:
    net, data, m, s = setup(size=64 * 16 * KiB)
    s.serve_delay = 0.05
    net.join(s)
    d = net.downloader("d", m.content_hash)
    net.join(d)  # d offers to s
    net.run(lambda: len(d.pieces) >= 8, 30)
    net.cut("d", "s")
    net.run_for(0.01)
    lost_at = net.now
    assert "s" not in d.links and not d.complete
    net.run(lambda: d.complete, 60)
    again = connects(d, "s")[1:]
    assert len(again) == 1, "offered again once, and it got through"
    assert retry_delay(1) <= again[0] - lost_at <= retry_delay(1) + TICK + 0.01  # busy's schedule
    assert d.content() == data
    assert [p.peer for p in d.events_of(ev.PeerJoined)] == ["s", "s"]
    assert d.warnings() == [] and s.warnings() == []
    assert s.did(act.Connect) == [], "a seeder wants nothing: it never redials"


def test_a_seeder_that_offered_and_lost_its_link_is_redialed_by_the_downloader() -> None:
    # The seeder came second, so it offered; it wants nothing, so the downloader redials.
    net, data, m, s = setup(size=64 * 16 * KiB)
    s.serve_delay = 0.05
    d = net.downloader("d", m.content_hash)
    net.join(s)  # s offers to d
    net.run(lambda: len(d.pieces) >= 8, 30)
    assert connects(s, "d") and not connects(d, "s")
    net.cut("s", "d")
    net.run(lambda: d.complete, 60)
    assert len(connects(d, "s")) == 1 and len(connects(s, "d")) == 1
    assert d.content() == data and d.warnings() == []


def test_of_two_downloaders_only_the_one_that_offered_redials() -> None:
    # Both want pieces: were both to offer at once, each would drop its own offer to answer
    # the other's. The one that offered the lost link offers again, alone.
    # Signaling alone: s would introduce d1 to d2 again by peer exchange (test_pex.py).
    net, _data, m, s = setup(size=64 * 16 * KiB, extensions=frozenset())
    s.serve_delay = 0.05
    net.join(s)
    d1 = net.downloader("d1", m.content_hash)
    net.join(d1)
    d2 = net.downloader("d2", m.content_hash)
    net.join(d2)  # d2 offers to s and d1
    net.run(lambda: "d1" in d2.links and d2.links["d1"].open, 5)
    net.cut("d2", "d1")
    net.run_for(retry_delay(1) + 2 * TICK)
    assert len(connects(d2, "d1")) == 2 and connects(d1, "d2") == []
    assert d2.links["d1"].open and d1.links["d2"] is d2.links["d1"]
    net.run(lambda: d1.complete and d2.complete, 60)
    assert d1.warnings() == [] and d2.warnings() == []


def test_a_peer_whose_links_keep_breaking_without_data_is_redialed_a_few_times_then_not() -> None:
    _net, _data, m, _s = setup()
    net = Net()  # no seeder: only a peer whose link breaks each time it opens
    r = net.raw("r")
    d = net.downloader("d", m.content_hash)
    net.join(d)  # d offers to r
    for _ in range(MAX_REDIALS + 1):
        net.run(lambda: "d" in r.links and r.links["d"].open, 60)
        r.send("d", Wire(m).handshake())
        net.run_for(0.1)
        r.hang_up("d")  # no CLOSE, nothing sent: a link that never brings anything
    net.run_for(5 * 30.0)
    assert len(connects(d, "r")) == 1 + MAX_REDIALS
    assert d.core.admission.lost_peers == {}


@pytest.mark.parametrize("how", ["close", "left", "done"])
def test_a_peer_that_closed_left_the_room_or_is_not_needed_is_never_redialed(how: str) -> None:
    net, _data, m, s = setup(size=64 * 16 * KiB)
    s.serve_delay = 0.05
    net.join(s)
    d = net.downloader("d", m.content_hash)
    net.join(d)
    if how == "done":
        net.run(lambda: d.complete, 60)
    else:
        net.run(lambda: len(d.pieces) >= 8, 30)
    if how == "close":
        s.core.forget("d", "going away", net.now)  # a CLOSE, then hang up
    elif how == "left":
        net.leave(s)  # signaling says it left; its links end
    else:
        net.cut("d", "s")
    net.run_for(10 * retry_delay(1))
    assert connects(d, "s") == [connects(d, "s")[0]]
    assert d.core.admission.lost_peers == {}


def test_a_peer_dropped_with_a_reason_gets_its_close_before_the_link_goes() -> None:
    # The adapter lingers on such a link (rtc.LINGER) so the CLOSE is not dropped with it.
    net, _data, m, s = setup()
    r = open_raw(net, s, handshake=Wire(m).handshake())
    r.send("s", b"\xee")  # a protocol error: dropped, banned, told why
    net.run_for(0.1)
    closes = [a for _, a in s.did(act.Close) if a.peer == "raw"]
    assert closes == [act.Close("raw", linger=True)]
    assert r.got(wire.Closed)


def test_a_peer_that_left_the_room_before_its_handshake_is_dropped_quietly_at_the_timeout() -> None:
    # Its process died right after the channel opened: signaling says it left, the link
    # never reports closing. Gone, not hostile: no ban, no warning (a tab said "error").
    net, _data, _m, s = setup()
    r = open_raw(net, s)
    s.core.admission.signaling_left("raw", net.now)
    net.run_for(wire.HANDSHAKE_TIMEOUT + TICK + 0.1)
    assert r.hung_up == ["s"]
    assert s.warnings() == [] and "raw" not in s.core.admission.banned


@pytest.mark.parametrize("new_key_first", [True, False])
def test_two_connections_to_one_peer_both_ends_keep_the_same_one(new_key_first: bool) -> None:
    """Two rendezvous found the same peer, so there are two connections. Each end sees the
    handshakes in its own order; it keeps the connection whose key (the same at both ends)
    sorts first, so the two ends never keep different ones and end up with none."""
    from p2pcli.swarm.core import SwarmCore

    data = bytes(range(256)) * 200
    m = make_manifest(data)
    core = SwarmCore(m.content_hash, b"S" * 16, now=1.0, manifest=m)
    remote = wire.encode_handshake(m.content_hash, b"R" * 16, wire.DEFAULT_MAX_BLOCK)
    keys = {"first": "b|c", "second": "a|b" if new_key_first else "c|d"}
    for peer in ("first", "second"):
        assert core.admission.offer_received(peer, 1.0)
        core.peer_opened(peer, "10.0.0.1", "host", 1.0, None, keys[peer])
        core.data_received(peer, remote, 1.0)
    closed = {a.peer for a in iter(core.next_action, None) if isinstance(a, act.Close)}
    kept = "second" if new_key_first else "first"
    assert closed == {"first", "second"} - {kept}
    assert list(core.peers) == [kept]


@pytest.mark.parametrize("relayed_first", [True, False])
def test_a_relayed_twin_gives_way_to_the_connection_a_rendezvous_made(relayed_first: bool):
    """Peer exchange may introduce a peer we are still connecting to through a rendezvous:
    both ends then drop the relayed connection ("px:"), whatever the keys, so the peer
    keeps the id the rendezvous gave it."""
    from p2pcli.swarm.core import SwarmCore

    data = bytes(range(256)) * 200
    m = make_manifest(data)
    core = SwarmCore(m.content_hash, b"S" * 16, now=1.0, manifest=m)
    remote = wire.encode_handshake(m.content_hash, b"R" * 16, wire.DEFAULT_MAX_BLOCK)
    order = ["px:" + (b"R" * 16).hex(), "sigid"] if relayed_first else [
        "sigid", "px:" + (b"R" * 16).hex()]
    keys = {"sigid": "z|z", order[0] if order[0] != "sigid" else order[1]: "a|a"}
    for peer in order:
        assert core.admission.offer_received(peer, 1.0)
        core.peer_opened(peer, "10.0.0.1", "host", 1.0, None, keys[peer])
        core.data_received(peer, remote, 1.0)
    closed = {a.peer for a in iter(core.next_action, None) if isinstance(a, act.Close)}
    assert closed == {"px:" + (b"R" * 16).hex()}
    assert list(core.peers) == ["sigid"]
