"""Peer exchange (p2pcli/swarm/pex.py, docs/PROTOCOL.md 3.5) on the simulated swarm.

Every test runs real `SwarmCore`s on tests/helpers/swarm_sim.py's in-memory network: a
peer learns another's id from a peer it is connected to, offers through it, and connects.
Hostile cases use a hand-driven peer (`Raw`) that negotiated peer exchange.
"""

from __future__ import annotations

import itertools
import random

from p2pcli import wire
from p2pcli.swarm import actions as act
from p2pcli.swarm import pex
from p2pcli.swarm.pex import MAX_DIALING, PREFIX, key_of
from tests.helpers.swarm_sim import Net, Node, Raw, Wire, make_manifest

KiB = 1024
OLD = frozenset()  # the extensions of a peer from before peer exchange (or the page)


def setup(size: int = 64 * 16 * KiB):
    data = random.Random(1).randbytes(size)
    m = make_manifest(data)
    net = Net()
    a = net.seeder("a", data, m)
    return net, data, m, a


def meet(net: Net, x: Node, y: str) -> None:
    """`x` meets `y` on a rendezvous that lists nobody else."""
    x.core.admission.peer_listed(y, net.now)


def pex_key(node: Node) -> str:
    return key_of(node.core.peer_id)


def ext_types(node: Node, peer: str) -> list[int]:
    return [d.data[0] for _, d in node.did(act.Send)
            if d.peer == peer and d.data[0] >= wire.MsgType.EXTENSIONS]


# -- the swarm grows through its peers ------------------------------------------------------


def test_a_newcomer_that_met_only_a_fetcher_reaches_the_seeder_through_it() -> None:
    net, data, m, a = setup()
    a.serve_delay = b_delay = 0.01
    b = net.downloader("b", m.content_hash)
    b.serve_delay = b_delay * 50  # b serves slowly: c wants a as well
    meet(net, b, "a")
    net.run(lambda: b.complete, 60)
    c = net.downloader("c", m.content_hash)
    meet(net, c, "b")  # the rendezvous is gone: c knows b only
    net.run(lambda: c.complete, 60)
    assert c.content() == data
    assert c.core.received_from.get(pex_key(a), 0) > 0, "a gave c pieces over the new link"
    assert pex_key(c) in a.core.connections
    assert b.core.pex.relayed == 2, "b relayed c's offer and a's answer, nothing else"
    assert c.warnings() == [] and a.warnings() == [] and b.warnings() == []


def test_a_seeder_never_dials_the_peers_it_hears_of() -> None:
    net, data, m, a = setup()
    b = net.downloader("b", m.content_hash)
    meet(net, b, "a")
    net.run(lambda: b.complete, 60)
    s2 = net.seeder("s2", data, m)
    meet(net, s2, "b")
    net.run_for(5)
    assert s2.core.pex.heard["b"] == (a.core.peer_id,), "it was told about a"
    assert s2.pex_offers == [], "it wants nothing: it dials nobody"


def test_two_fetchers_that_dial_each_other_at_once_end_with_one_connection() -> None:
    net, _data, m, a = setup()
    a.serve_delay = 0.05
    c = net.downloader("c", m.content_hash)
    d = net.downloader("d", m.content_hash)
    for n in (c, d):
        meet(net, n, "a")
        n.core.admission.accepting = False  # hold their dials until both heard of the other
    net.run(lambda: "a" in c.core.pex.heard and "a" in d.core.pex.heard, 5)
    for n in (c, d):
        n.core.admission.accepting = True
        n.core.pex.dial(net.now)
    net.run(lambda: pex_key(d) in c.core.peers and c.core.peers[pex_key(d)].ready, 10)
    assert len(c.pex_offers + d.pex_offers) == 2, "both offered"
    lo, hi = sorted([c, d], key=lambda n: n.core.peer_id)
    assert lo.core.peers[pex_key(hi)].offerer, "the lower id's offer stands"
    assert not hi.core.peers[pex_key(lo)].offerer
    net.run(lambda: c.complete and d.complete, 60)
    assert c.warnings() == [] and d.warnings() == []


def test_lists_go_out_at_once_then_at_most_every_interval() -> None:
    net, _data, m, a = setup()
    a.serve_delay = 1.0  # slow: everyone stays a downloader for a while
    b = net.downloader("b", m.content_hash)
    meet(net, b, "a")
    net.run(lambda: "b" in a.core.peers and a.core.peers["b"].ready, 5)
    for name in ("c", "d", "e"):
        n = net.downloader(name, m.content_hash)
        meet(net, n, "a")
        net.run_for(1)
    net.run_for(wire.PEX_INTERVAL)
    sent = [t for t, s in a.did(act.Send) if s.peer == "b" and s.data[0] == wire.MsgType.PEX]
    assert len(sent) >= 2
    assert all(t2 - t1 >= wire.PEX_INTERVAL for t1, t2 in itertools.pairwise(sent))
    last = b.core.pex.heard["a"]
    assert {net.endpoints[n].core.peer_id for n in ("c", "d", "e")} <= set(last)


# -- old peers and the page -----------------------------------------------------------------


def test_old_peers_never_get_an_extension_message_either_way_round() -> None:
    net, data, m, a = setup()
    old = net.downloader("old", m.content_hash, extensions=OLD)
    new = net.downloader("new", m.content_hash)
    meet(net, old, "a")  # old offers to a new seeder
    meet(net, new, "old")  # a new fetcher offers to an old one
    net.run(lambda: old.complete and new.complete, 60)
    assert ext_types(a, "old") == [] and ext_types(new, "old") == []
    assert old.warnings() == [] and new.warnings() == [] and a.warnings() == []
    assert new.pex_offers == [], "the old peer told it nothing"
    assert new.content() == data


# -- hostile peers --------------------------------------------------------------------------


def pex_raw(net: Net, target: Node, name: str = "evil", peer_id: bytes = b"evil-peer-id-001"
            ) -> tuple[Raw, Wire]:
    """A hand-driven peer that offered peer exchange to `target` and handshook."""
    r = net.raw(name)
    r.protocol = "p2p/1 pex"
    r.peer_id = peer_id
    w = Wire(make_manifest(b"x"), peer_id=peer_id)
    r.connect(target.name)
    net.run_for(0.01)
    r.send(target.name, w.handshake(target.core.content_hash))
    net.run_for(0.01)
    assert r.got(wire.ExtensionsAccepted) == [wire.ExtensionsAccepted(frozenset({"pex"}))]
    return r, w


def fake_ids(n: int) -> list[bytes]:
    return [f"fake-{i:011d}".encode() for i in range(n)]


def test_ids_a_hostile_peer_names_are_offered_only_through_it_and_only_a_few_at_once() -> None:
    net, _data, m, a = setup()
    a.serve_delay = 5.0  # d still wants pieces long after r's dials failed
    d = net.downloader("d", m.content_hash)
    meet(net, d, "a")
    net.run(lambda: d.core.usable_peers(), 5)
    r, _ = pex_raw(net, d)
    r.send("d", wire.encode_pex(fake_ids(wire.PEX_MAX_PEERS)))
    net.run_for(1)
    relays = r.got(wire.RelayRequested, "d")
    assert len(relays) == MAX_DIALING, "a few at once"
    assert {e.target for e in relays} <= set(fake_ids(wire.PEX_MAX_PEERS))
    assert ext_types(d, "a") == [wire.MsgType.PEX] * len(ext_types(d, "a")), \
        "nothing named by r went to a"
    assert all(k.startswith(PREFIX) or k in ("a", "evil") for k in d.core.peers)
    net.run_for(2 * pex.RETRY_AFTER + 20)  # nobody answers: those dials fail...
    assert not d.complete
    assert len(r.got(wire.RelayRequested, "d")) == MAX_DIALING, "...and r introduces no more"
    assert d.core.pex.via_failures["evil"] >= pex.MAX_FAILURES


def test_offers_relayed_through_one_peer_hold_at_most_a_few_slots() -> None:
    net, _data, m, _a = setup()
    d = net.downloader("d", m.content_hash)
    r, _ = pex_raw(net, d)
    for pid in fake_ids(10):  # within the signal budget, from ten made-up sources
        r.send("d", wire.encode_relayed(pid, wire.Signal.OFFER, "forged"))
    net.run_for(1)
    assert len(d.did(act.Relay)) == MAX_DIALING
    assert len([k for k in d.core.peers if k.startswith(PREFIX)]) == MAX_DIALING
    assert "evil" in d.core.peers, "within the budget: not a flood"


def test_a_pex_flood_drops_and_bans_the_peer() -> None:
    net, _data, m, _a = setup()
    d = net.downloader("d", m.content_hash)
    r, _ = pex_raw(net, d)
    for _ in range(wire.PEX_BURST + 1):
        r.send("d", wire.encode_pex(fake_ids(1)))
    net.run_for(0.1)
    closes = r.got(wire.Closed, "d")
    assert closes and "peer exchange flood" in closes[-1].reason
    assert "evil" in d.core.admission.banned


def test_a_signal_flood_drops_and_bans_the_peer() -> None:
    net, _data, m, _a = setup()
    d = net.downloader("d", m.content_hash)
    r, _ = pex_raw(net, d)
    for i in range(2 * wire.SIGNAL_BURST + 1):
        r.send("d", wire.encode_relay(fake_ids(1)[0], wire.Signal.OFFER, f"sdp {i}"))
    net.run_for(0.1)
    closes = r.got(wire.Closed, "d")
    assert closes and "signal flood" in closes[-1].reason


def test_the_middle_forwards_only_to_its_peers_and_stamps_the_real_sender() -> None:
    net, _data, m, a = setup()
    b = net.downloader("b", m.content_hash)
    meet(net, b, "a")
    net.run(lambda: b.complete, 60)
    r, _ = pex_raw(net, b)
    r.send("b", wire.encode_relay(fake_ids(1)[0], wire.Signal.OFFER, "to nobody"))
    r.send("b", wire.encode_relay(a.core.peer_id, wire.Signal.ANSWER, "to a"))
    net.run_for(0.1)
    assert b.core.pex.relayed == 1
    # a got it stamped with r's handshake id, and takes no answer it never asked for.
    assert a.did(act.Relay) == []
    r.send("b", wire.encode_relay(a.core.peer_id, wire.Signal.OFFER, "an offer"))
    net.run_for(0.1)
    (relay,) = [x for _, x in a.did(act.Relay)]
    assert relay.peer == key_of(r.peer_id) and relay.kind == "offer"


def test_a_peer_that_answers_under_another_id_than_it_was_introduced_by_is_dropped() -> None:
    net, _data, m, _a = setup()
    d = net.downloader("d", m.content_hash)
    r, _ = pex_raw(net, d)
    impostor = net.raw("impostor")
    impostor.peer_id = b"named-by-r-00001"
    r.send("d", wire.encode_pex([impostor.peer_id]))
    net.run_for(0.1)
    (relay,) = r.got(wire.RelayRequested, "d")
    # r "relays" an answer naming a link to the impostor, which handshakes as someone else.
    link = d.links[key_of(impostor.peer_id)]
    link.b = "impostor"
    link.keys["impostor"] = "d"
    impostor.links["d"] = link
    token = next(t for t, lk in net.pending.items() if lk is link)
    r.send("d", wire.encode_relayed(relay.target, wire.Signal.ANSWER, token))
    net.run_for(0.1)
    assert link.open
    impostor.send("d", Wire(m, peer_id=b"someone-else-001").handshake())
    net.run_for(0.1)
    assert any("not the peer it was introduced as" in w for w in d.warnings())
    key = key_of(impostor.peer_id)
    assert key not in d.core.peers and key in d.core.admission.banned, "never dialed again"
