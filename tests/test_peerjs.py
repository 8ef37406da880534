"""Meeting through a PeerJS server (p2pcli/rendezvous/peerjs.py, sans I/O, and its adapter
peerjsclient.py): ids and slots, who offers, what is relayed and what is not trusted, then
the real thing: `PeerJSMeeting`s on the `peer` package's own server (tests/js/peerjs_server.mjs),
a fake server that talks garbage, and `p2p seed --peerjs` / `p2p fetch` meeting there alone."""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
from dataclasses import dataclass, field
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from conftest import Procs, free_port, make_file, one_line_error, sha256, start_peerjs_server
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pcli.errors import P2PError, SignalUnreachable, UsageError
from p2pcli.rendezvous import peerjs as pj
from p2pcli.rendezvous.peerjs import (
    Found,
    Ignored,
    Left,
    Opened,
    PeerJSSession,
    Refused,
    Relayed,
    Taken,
)
from p2pcli.rendezvous.peerjsclient import START_TIMEOUT, PeerJSMeeting
from p2pcli.swarm.meet import MeetHandlers

HASH = bytes(range(32))
OTHER = bytes(range(1, 33))
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
CAND = {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0",
        "sdpMLineIndex": 0}


def session(seed: int = 1, prefix: str = "pj:", content: bytes = HASH) -> PeerJSSession:
    return PeerJSSession(content, prefix=prefix, rng=random.Random(seed))


def join(s: PeerJSSession, slot: int | None = None, now: float = 0.0) -> PeerJSSession:
    """`s` registered, at `slot` when given (as if the others were taken); its hellos wait
    in its outbox."""
    while True:
        peer_id = s.claim()
        assert peer_id is not None
        if slot is None or peer_id.endswith(f"-{slot}"):
            break
        assert s.receive(json.dumps({"type": "ID-TAKEN", "payload": {"msg": "x"}}), now)
    assert s.receive('{"type": "OPEN"}', now) == [Opened(s.slot)]
    return s


def opened(s: PeerJSSession, slot: int | None = None, now: float = 0.0) -> PeerJSSession:
    """`s` registered, its hellos gone nowhere."""
    join(s, slot, now).messages_to_send()
    return s


class Relay:
    """The server's relaying, in memory: each sent message reaches the session holding its
    `dst`, stamped with the sender's id as `src` (what PeerServer does); messages to an id
    nobody holds are dropped."""

    def __init__(self, *sessions: PeerJSSession) -> None:
        self.by_id: dict[str, PeerJSSession] = {}
        self.events: dict[PeerJSSession, list] = {}
        for s in sessions:
            self.add(s)

    def add(self, s: PeerJSSession) -> None:
        assert s.slot is not None
        self.by_id[s.slot_id(s.slot)] = s
        self.events.setdefault(s, [])

    def run(self, now: float = 0.0) -> None:
        moved = True
        while moved:
            moved = False
            for s in list(self.events):
                for text in s.messages_to_send():
                    msg = json.loads(text)
                    to = self.by_id.get(msg.get("dst"))
                    if to is not None:
                        msg["src"] = s.slot_id(s.slot)
                        self.events[to] += to.receive(json.dumps(msg), now)
                        moved = True


def found(events: list) -> list[str]:
    return [p for e in events if isinstance(e, Found) for p in e.peers]


def from_peer(sender: PeerJSSession, kind: str, payload: dict, **extra) -> str:
    return json.dumps({"type": kind, "src": sender.slot_id(sender.slot), "payload": payload,
                       **extra})


# -- ids and URLs -------------------------------------------------------------------------------


def test_ids_name_the_share_without_revealing_its_hash():
    base = pj.base_id(HASH)
    assert base == pj.base_id(HASH) != pj.base_id(OTHER)
    assert HASH.hex()[:16] not in base
    # The peerjs client's own rule for ids (lib/utils/validateId.ts).
    assert re.fullmatch(r"[A-Za-z0-9]+(?:[ _-][A-Za-z0-9]+)*", f"{base}-15")


@pytest.mark.parametrize(("text", "ws", "shown"), [
    ("peerjs://example.org", "wss://example.org:443/peerjs?key=peerjs",
     "wss://example.org:443/?key=peerjs"),
    ("http://127.0.0.1:9000/app?key=k", "ws://127.0.0.1:9000/app/peerjs?key=k",
     "ws://127.0.0.1:9000/app/?key=k"),
    ("wss://h:8443/a/b/", "wss://h:8443/a/b/peerjs?key=peerjs", "wss://h:8443/a/b/?key=peerjs"),
    ("ws://[::1]:9000", "ws://[::1]:9000/peerjs?key=peerjs", "ws://[::1]:9000/?key=peerjs"),
    ("https://h", "wss://h:443/peerjs?key=peerjs", "wss://h:443/?key=peerjs"),
])
def test_server_urls(text, ws, shown):
    server = pj.parse_server(text)
    assert server.ws_url("p2p-x-1", "tok") == f"{ws}&id=p2p-x-1&token=tok"
    assert str(server) == shown and pj.parse_server(str(server)) == server


@pytest.mark.parametrize("text", ["ftp://h", "peerjs://", "ws://u:p@h", "ws://h:99999",
                                  "ws://h?key=", "ws://h?key=a&key=b", "h:9000"])
def test_what_is_not_a_server_url_says_so(text):
    with pytest.raises(ValueError, match="PeerJS server URL"):
        pj.parse_server(text)


# -- claiming a slot ----------------------------------------------------------------------------


def test_a_slot_is_claimed_at_random_and_a_taken_one_moves_on():
    s = session()
    tried = []
    while (peer_id := s.claim()) is not None:
        tried.append((int(peer_id.rsplit("-", 1)[1]), s.token))
        assert s.receive('{"type": "ID-TAKEN", "payload": {"msg": "ID is taken"}}', 0.0) == \
            [Taken(tried[-1][0])]
    assert sorted(t for t, _ in tried) == list(range(pj.SLOTS))
    assert [t for t, _ in tried] != list(range(pj.SLOTS))  # not in order: few collisions
    assert len({tok for _, tok in tried}) == pj.SLOTS  # a fresh token every time


def test_open_says_hello_to_every_other_slot_then_heartbeats():
    s = session()
    s.claim()
    assert s.timer() is None
    [ev] = s.receive('{"type": "OPEN"}', 100.0)
    hellos = [json.loads(m) for m in s.messages_to_send()]
    assert sorted(m["dst"] for m in hellos) == sorted(s.slot_id(i) for i in range(pj.SLOTS)
                                                     if i != ev.slot)
    assert all(m["type"] == "CANDIDATE" and m["payload"]["say"] == "hello"
               and m["payload"]["p2p"] == {"from": s.instance} for m in hellos)
    assert s.timer() == 100.0 + pj.HEARTBEAT_INTERVAL
    s.on_timer(s.timer())
    assert s.messages_to_send() == ['{"type": "HEARTBEAT"}']
    assert s.timer() == 100.0 + 2 * pj.HEARTBEAT_INTERVAL


def test_after_a_drop_the_slot_held_is_asked_for_first():
    s = opened(session())
    held = s.slot
    s.disconnected()
    assert s.timer() is None and s.claim() == s.slot_id(held)


@pytest.mark.parametrize(("text", "reason"), [
    ('{"type": "ERROR", "payload": {"msg": "Invalid key provided"}}', "Invalid key provided"),
    ('{"type": "INVALID-KEY"}', "invalid key"),
])
def test_a_server_refusal_is_said_in_its_words(text, reason):
    s = session()
    s.claim()
    assert s.receive(text, 0.0) == [Refused(reason)]


# -- who offers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0), "together"])
def test_of_every_two_peers_exactly_the_higher_slot_offers(order):
    a, b, c = (session(seed) for seed in (10, 11, 12))
    slots = {a: 3, b: 7, c: 12}
    relay = Relay()
    if order == "together":  # the hellos of all three cross
        for s in (a, b, c):
            relay.add(join(s, slots[s]))
        relay.run()
    else:
        for i in order:
            s = (a, b, c)[i]
            relay.add(join(s, slots[s]))
            relay.run()
    assert found(relay.events[a]) == []
    assert found(relay.events[b]) == [f"pj:3.{a.instance}"]
    assert sorted(found(relay.events[c])) == sorted([f"pj:3.{a.instance}",
                                                     f"pj:7.{b.instance}"])


def test_a_peer_is_named_once_per_report_interval():
    low, high = opened(session(1), 0), opened(session(2), 5)
    relay = Relay(low, high)
    for t in (0.0, 1.0, pj.REPORT_INTERVAL + 1):  # hellos, as after each reconnection
        high.disconnected()
        join(high, 5, t)
        relay.run(t)
    assert found(relay.events[high]) == [f"pj:0.{low.instance}"] * 2


# -- the relay ----------------------------------------------------------------------------------


def pair() -> tuple[PeerJSSession, PeerJSSession, Relay, str, str]:
    """`high` has found `low`; their names for each other."""
    high = opened(session(2), 9)
    low = join(session(1), 2)
    relay = Relay(low, high)
    relay.run()
    [name_low] = found(relay.events[high])
    relay.events[high].clear()
    return low, high, relay, name_low, f"pj:9.{high.instance}"


def test_offer_answer_and_candidates_arrive_as_our_signaling_events():
    low, high, relay, name_low, name_high = pair()
    assert high.send("offer", name_low, {"offer": {"type": "offer", "sdp": SDP}}, 1.0) == []
    [offer] = [json.loads(m) for m in high._out]
    # The peerjs client's DataConnection offer, so a PeerJS tool reads it as one.
    assert offer["type"] == "OFFER" and offer["dst"] == low.slot_id(2)
    p = offer["payload"]
    assert p["sdp"] == {"type": "offer", "sdp": SDP} and p["type"] == "data"
    assert p["connectionId"].startswith("dc_") and p["serialization"] == "raw"
    assert p["reliable"] is True and p["p2p"] == {"from": high.instance, "to": low.instance}
    relay.run(1.0)
    hx = HASH.hex()
    assert relay.events[low] == [Relayed("offer", name_high,
                                         {"hash": hx, "offer": {"type": "offer", "sdp": SDP}})]
    low.send("answer", name_high, {"hash": hx, "answer": {"type": "answer", "sdp": "a"}}, 1.0)
    low.send("ice-candidate", name_high, {"hash": hx, "candidate": CAND}, 1.0)
    high.send("ice-candidate", name_low, {"hash": hx, "candidate": {**CAND, "x": 1}}, 1.0)
    relay.run(1.0)
    assert relay.events[high] == [
        Relayed("answer", name_low, {"hash": hx, "answer": {"type": "answer", "sdp": "a"}}),
        Relayed("ice-candidate", name_low, {"hash": hx, "candidate": CAND})]
    assert relay.events[low][1:] == [Relayed("ice-candidate", name_high,
                                             {"hash": hx, "candidate": CAND})]
    # An offer is answered once: a second answer is not passed on.
    low.send("answer", name_high, {"answer": {"type": "answer", "sdp": "a"}}, 1.0)
    relay.run(1.0)
    assert isinstance(relay.events[high][-1], Ignored)


def test_busy_goes_as_a_leave_and_comes_back_as_busy():
    low, high, relay, name_low, name_high = pair()
    high.send("offer", name_low, {"offer": {"type": "offer", "sdp": SDP}}, 1.0)
    relay.run()
    low.send("answer", name_high, {"hash": HASH.hex(), "busy": "every slot is taken"}, 1.0)
    assert json.loads(low._out[0])["type"] == "LEAVE"
    relay.run()
    assert relay.events[high] == [Relayed("answer", name_low, {"hash": HASH.hex(),
                                                               "busy": "every slot is taken"})]


def test_goodbye_and_expire_and_a_new_holder_make_a_peer_leave():
    low, high, relay, name_low, _ = pair()
    high.send("offer", name_low, {"offer": {"type": "offer", "sdp": SDP}}, 1.0)
    relay.run()  # now low knows high too
    low.goodbye()
    relay.run()
    assert relay.events[high] == [Left(name_low)]
    low, high, relay, name_low, _ = pair()
    assert high.receive(json.dumps({"type": "EXPIRE", "src": low.slot_id(2)}), 1.0) == \
        [Left(name_low)]
    assert isinstance(high.receive(json.dumps({"type": "EXPIRE", "src": low.slot_id(2)}),
                                   1.0)[0], Ignored)
    low, high, relay, name_low, _name_high = pair()
    newcomer = join(session(3), 2)  # slot 2 changed hands while high was away
    relay = Relay(newcomer, high)
    relay.run(50.0)
    assert relay.events[high] == [Left(name_low), Found([f"pj:2.{newcomer.instance}"])]


def test_offers_are_budgeted_both_ways():
    low, high, relay, name_low, _name_high = pair()
    for i in range(pj.OFFERS_PER_MINUTE):
        assert high.send("offer", name_low, {"offer": {"type": "offer", "sdp": SDP}}, i) == []
    # Over the budget the swarm hears "busy" at once and tries again later.
    assert high.send("offer", name_low, {"offer": {"type": "offer", "sdp": SDP}}, 31.0) == \
        [Relayed("answer", name_low, {"hash": HASH.hex(), "busy": "PeerJS offer budget spent"})]
    relay.run()
    assert len(relay.events[low]) == pj.OFFERS_PER_MINUTE
    offer = {"sdp": {"type": "offer", "sdp": SDP}, "connectionId": "dc_x",
             "p2p": {"from": high.instance, "to": low.instance}}
    assert isinstance(low.receive(from_peer(high, "OFFER", offer), 59.0)[0], Ignored)
    assert isinstance(low.receive(from_peer(high, "OFFER", offer), 61.0)[0], Relayed)


def test_what_the_swarm_sends_to_nobody_is_dropped():
    low, high, _relay, name_low, _name_high = pair()
    for peer in (f"pj:2.{'x' * 12}", "pj:2", "pj:99.abc", "other:2." + low.instance):
        assert isinstance(high.send("offer", peer, {"offer": {"type": "offer", "sdp": SDP}},
                                    0.0)[0], Ignored)
    assert isinstance(high.send("answer", name_low, {"answer": {"type": "answer", "sdp": "a"}},
                                0.0)[0], Ignored)  # it made no offer
    assert isinstance(high.send("ice-candidate", name_low, {"candidate": CAND}, 0.0)[0], Ignored)
    assert high.messages_to_send() == []


def garbage(low: PeerJSSession, high: PeerJSSession) -> list[tuple[str, str]]:
    src = high.slot_id(high.slot)
    mark = {"from": high.instance, "to": low.instance}
    good = {"sdp": {"type": "offer", "sdp": SDP}, "connectionId": "dc_1", "p2p": mark}

    def msg(kind="OFFER", payload=good, s=src):
        return json.dumps({"type": kind, "src": s, "payload": payload})

    return [
        ("{", "not JSON"), ("[1]", "not a PeerJS"), ('{"type": 5}', "not a PeerJS"),
        ("x" * (pj.MAX_MESSAGE + 1), "characters"),
        (msg(s=pj.base_id(OTHER) + "-9"), "src"), (msg(s=low.slot_id(low.slot)), "src"),
        (msg(s=low.slot_id(16)), "src"), (msg(s=low.slot_id(9) + "0"), "src"),
        (msg(s=None), "src"), (msg(s=low.base + "-\u0669"), "src"),
        (msg(payload={**good, "p2p": None}), "p2p mark"), (msg(payload=[1]), "p2p mark"),
        (msg(payload={**good, "p2p": {"from": "short"}}), "sender"),
        (msg(payload={**good, "p2p": {"from": "x" * 12, "to": "y" * 12}}), "previous holder"),
        (msg(payload={**good, "p2p": {"from": high.instance}}), "addressed to nobody"),
        (msg(payload={**good, "sdp": {"type": "answer", "sdp": SDP}}), "without SDP"),
        (msg(payload={**good, "sdp": {"type": "offer", "sdp": "x" * (pj.MAX_SDP + 1)}}),
         "without SDP"),
        (msg(payload={**good, "connectionId": "a b"}), "connection id"),
        (msg("ANSWER", {**good, "sdp": {"type": "answer", "sdp": SDP}}), "outside"),
        (msg("CANDIDATE", {**good, "candidate": CAND}), "outside"),
        (msg("LEAVE", {**good, "busy": "no"}), "outside"),
        (msg("HEARTBEAT"), "HEARTBEAT"),
        (msg("CANDIDATE", {"say": "here", "p2p": mark}), "here"),
    ]


def test_what_is_not_ours_or_malformed_is_ignored_with_a_reason():
    low, high = opened(session(1), 2), opened(session(2), 9)
    for text, why in garbage(low, high):
        evs = low.receive(text, 0.0)
        assert isinstance(evs[-1], Ignored) and why in evs[-1].why, (text[:200], evs)
    # The negotiation is checked too: a candidate of another connection, a bad candidate.
    mark = {"from": high.instance, "to": low.instance}
    low.receive(from_peer(high, "OFFER", {"sdp": {"type": "offer", "sdp": SDP},
                                          "connectionId": "dc_1", "p2p": mark}), 0.0)
    for cand, why in [({**CAND, "candidate": 5}, "malformed"),
                      ({**CAND, "sdpMLineIndex": True}, "malformed"),
                      ({**CAND, "candidate": "c" * 3000}, "malformed")]:
        [ev] = low.receive(from_peer(high, "CANDIDATE", {"candidate": cand,
                                                         "connectionId": "dc_1", "p2p": mark}),
                           0.0)
        assert isinstance(ev, Ignored) and why in ev.why
    [ev] = low.receive(from_peer(high, "CANDIDATE", {"candidate": CAND, "connectionId": "dc_2",
                                                     "p2p": mark}), 0.0)
    assert isinstance(ev, Ignored) and "outside" in ev.why
    assert isinstance(session().receive(from_peer(high, "OFFER", {}), 0.0)[0], Ignored)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["OPEN", "ID-TAKEN", "ERROR", "OFFER", "ANSWER", "CANDIDATE",
                             "LEAVE", "EXPIRE", "HEARTBEAT", "X"]),
       payload=json_values, say=st.sampled_from([None, "hello", "here", 3]),
       to_us=st.booleans(), conn=st.sampled_from([None, "dc_1", 7, ""]))
def test_no_message_makes_a_session_raise(kind, payload, say, to_us, conn):
    low, high = opened(session(1), 2), opened(session(2), 9)
    if isinstance(payload, dict):
        payload = {**payload, "say": say, "connectionId": conn,
                   "p2p": {"from": high.instance, **({"to": low.instance} if to_us else {})}}
    for evs in (low.receive(json.dumps({"type": kind, "src": high.slot_id(9),
                                        "payload": payload}), 0.0),
                low.receive(json.dumps({"type": kind, "payload": payload}), 0.0)):
        assert all(isinstance(e, (Opened, Taken, Refused, Found, Relayed, Left, Ignored))
                   for e in evs)


# -- with the real server -----------------------------------------------------------------------


@dataclass
class Recorder:
    """A swarm's side of a meeting that writes down what it hears."""

    found: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    signals: list[tuple[str, str, dict]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    heard: asyncio.Event = field(default_factory=asyncio.Event)

    def handlers(self) -> MeetHandlers:
        async def peer_list(peers):
            self.found += peers
            self.heard.set()

        async def peer_left(peer):
            self.left.append(peer)
            self.heard.set()

        async def signal(kind, peer, data):
            self.signals.append((kind, peer, data))
            self.heard.set()

        async def unused(*a):
            raise AssertionError("a PeerJS meeting asked for this")

        def emit(e):
            self.warnings.append(getattr(e, "message", e.kind))
            self.heard.set()

        return MeetHandlers(peer_list=peer_list, peer_left=peer_left, signal=signal,
                            ice_config=unused, new_offer=unused, adopt=unused, emit=emit)

    async def until(self, pred, what: str, timeout: float = 15.0):
        async with asyncio.timeout(timeout):
            while not (v := pred()):
                self.heard.clear()
                await self.heard.wait()
            return v


def meeting(url: str, prefix: str, content: bytes = HASH) -> tuple[PeerJSMeeting, Recorder]:
    r = Recorder()
    return PeerJSMeeting(url, content, r.handlers(), prefix=prefix), r


@pytest.mark.timeout(90)
def test_three_peers_meet_and_signal_through_the_real_server(peerjs_server):
    url, server = peerjs_server

    async def main() -> None:
        ms = [meeting(url, f"m{i}:") for i in range(3)]
        stranger, srec = meeting(url, "s:", OTHER)  # another share on the same server
        for m, _ in [*ms, (stranger, srec)]:
            await m.start()
        try:
            by_slot = sorted(ms, key=lambda mr: mr[0].session.slot)
            names = [f"{m.session.slot}.{m.session.instance}" for m, _ in by_slot]
            # The higher slot offers: the middle one finds the lowest, the highest both.
            for i, (m, r) in enumerate(by_slot):
                want = sorted(m.prefix + n for n in names[:i])
                await r.until(lambda r=r, want=want: sorted(r.found) == want, "found")
            (lo, lo_rec), (hi, hi_rec) = by_slot[0], by_slot[2]
            hx = HASH.hex()
            offer = {"hash": hx, "offer": {"type": "offer", "sdp": SDP}}
            await hi.send("offer", hi.prefix + names[0], offer)
            got = await lo_rec.until(lambda: lo_rec.signals, "the offer")
            assert got == [("offer", lo.prefix + names[2], offer)]
            answer = {"hash": hx, "answer": {"type": "answer", "sdp": SDP + "a=x\r\n"}}
            await lo.send("answer", lo.prefix + names[2], answer)
            await lo.send("ice-candidate", lo.prefix + names[2], {"hash": hx,
                                                                 "candidate": CAND})
            await hi_rec.until(lambda: len(hi_rec.signals) == 2, "answer and candidate")
            assert hi_rec.signals == [("answer", hi.prefix + names[0], answer),
                                      ("ice-candidate", hi.prefix + names[0],
                                       {"hash": hx, "candidate": CAND})]
            # Leaving is heard by those who knew it.
            await lo.close()
            await hi_rec.until(lambda: hi_rec.left, "the leave")
            assert hi_rec.left == [hi.prefix + names[0]]
            assert srec.found == srec.signals == []
        finally:
            for m, _ in [*ms, (stranger, srec)]:
                await m.close()

    asyncio.run(main())
    assert "error" not in server.stderr, server.stderr


async def _hold(http: aiohttp.ClientSession, url: str, peer_id: str):
    ws = await http.ws_connect(pj.parse_server(url).ws_url(peer_id, "squatter"))
    assert json.loads((await ws.receive()).data)["type"] == "OPEN"
    return ws


@pytest.mark.timeout(60)
def test_a_taken_slot_moves_on_and_a_full_share_says_so(peerjs_server):
    url, _ = peerjs_server

    async def main() -> None:
        base = pj.base_id(HASH)
        async with aiohttp.ClientSession() as http:
            held = [await _hold(http, url, f"{base}-{i}") for i in range(pj.SLOTS) if i != 11]
            m, _ = meeting(url, "a:")
            await m.start()
            assert m.session.slot == 11
            other, _ = meeting(url, "b:")
            with pytest.raises(SignalUnreachable, match="all 16 ids of this share are taken"):
                await other.start()
            await other.close()
            await m.close()
            for ws in held:
                await ws.close()

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_an_unreachable_or_refusing_server_fails_start_in_bounded_time(peerjs_server):
    url, _ = peerjs_server

    async def silent(reader, writer):
        await asyncio.sleep(60)  # takes the TCP connection, never answers the upgrade

    hang_up = asyncio.Event()

    async def mute(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoclose=False)
        await ws.prepare(request)
        await hang_up.wait()  # no OPEN, no answer to a close frame
        return ws

    async def main() -> None:
        for bad, match in [(f"ws://127.0.0.1:{free_port()}", "could not be reached"),
                           (url + "/?key=wrong", "refused us: Invalid key provided"),
                           (url + "/elsewhere/", "could not be reached")]:
            m, _ = meeting(bad, "x:")
            async with asyncio.timeout(START_TIMEOUT + 5):
                with pytest.raises(SignalUnreachable, match=match):
                    await m.start()
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        m, _ = meeting(f"ws://127.0.0.1:{port}", "x:")
        async with asyncio.timeout(START_TIMEOUT + 5):
            with pytest.raises(P2PError, match=r"could not be reached \(no answer in 5s\)"):
                await m.start()
        server.close()
        # A WebSocket server that takes the connection and then says nothing at all.
        app = web.Application()
        app.router.add_get("/peerjs", mute)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        m, _ = meeting(f"ws://127.0.0.1:{port}", "x:")
        async with asyncio.timeout(START_TIMEOUT + 5):
            with pytest.raises(P2PError, match=r"could not be reached \(no answer in 5s\)"):
                await m.start()
        hang_up.set()
        await runner.cleanup()

    asyncio.run(main())
    with pytest.raises(UsageError):
        meeting("ftp://nowhere", "x:")


@pytest.mark.timeout(90)
def test_a_dropped_meeting_reconnects_and_is_found_again(procs: Procs, peerjs_server):
    url, server = peerjs_server
    port = url.rsplit(":", 1)[1]

    async def main() -> None:
        old, old_rec = meeting(url, "o:")
        await old.start()
        server.kill()
        await old_rec.until(lambda: old_rec.warnings, "the lost connection")
        assert "reconnecting" in old_rec.warnings[0]
        await asyncio.to_thread(start_peerjs_server, procs, "peerjs2", port=int(port))
        new, new_rec = meeting(url, "n:")
        async with asyncio.timeout(40):
            while old.session.slot is None:  # back on the server (its back-off: 1, 2, 4 s)
                await asyncio.sleep(0.1)
        await new.start()
        one = sorted([old, new], key=lambda m: m.session.slot)
        rec = new_rec if one[1] is new else old_rec
        await rec.until(lambda: rec.found, "the other peer")
        await old.close()
        await new.close()

    asyncio.run(main())


# -- a server that talks garbage ----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_garbage_from_a_fake_server_is_ignored_never_a_crash():
    """A server that refuses every slot but 5, then talks nonsense in every way `garbage`
    knows (addressed to the meeting's own instance), then one good hello, then hangs up:
    the meeting passes on the hello only, and comes back."""
    m, rec = meeting("ws://127.0.0.1:1", "g:")  # its port is set below
    connections: list[str] = []
    hi = opened(session(2), 3)

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        peer_id = request.query["id"]
        if not peer_id.endswith("-5"):
            await ws.send_str('{"type": "ID-TAKEN", "payload": {"msg": "ID is taken"}}')
            await ws.close()
            return ws
        connections.append(peer_id)
        await ws.send_str("not json at all")  # before OPEN too
        await ws.send_bytes(b"\x00\xff")
        await ws.send_str('{"type": "OPEN"}')
        await ws.send_str('{"type": "OPEN"}')  # twice
        await ws.send_str('{"type": "ID-TAKEN"}')  # after OPEN: meaningless
        me = session(1)
        me.slot, me.instance = 5, m.session.instance
        for text, _ in garbage(me, hi):
            await ws.send_str(text)
        await ws.send_str(json.dumps({"type": "CANDIDATE", "src": hi.slot_id(3), "payload": {
            "type": "data", "say": "hello", "p2p": {"from": hi.instance}}}))
        await asyncio.sleep(0.2)
        await ws.close()  # then the meeting reconnects
        return ws

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/peerjs", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        m.server = pj.parse_server(f"ws://127.0.0.1:{port}")
        try:
            await m.start()
            assert m.session.slot == 5
            async with asyncio.timeout(20):
                while len(connections) < 2:
                    await asyncio.sleep(0.05)
            assert m._task is not None and not m._task.done()
            assert rec.found == [f"g:3.{hi.instance}"]
            assert rec.signals == rec.left == []
        finally:
            await m.close()
            await runner.cleanup()

    asyncio.run(main())


# -- seed and fetch through a PeerJS server -----------------------------------------------------


def events_of(proc, kind: str) -> list[dict]:
    return [e for e in proc.events() if e["event"] == kind]


def peerjs_only(link: str, server: str) -> str:
    """`link` with its signaling URL taken out: the PeerJS server is its only rendezvous."""
    content = link.split("://", 1)[1].split("?", 1)[0]
    return f"p2p://{content}?peerjs={quote(server, safe='')}"


@pytest.mark.timeout(120)
def test_seed_and_fetch_meet_through_a_peerjs_server_alone(procs: Procs, peerjs_server):
    """`seed --peerjs` puts the server in its link; a fetch given only that (no signaling
    server, no LAN) finds the seeder there and gets the file byte for byte, to a file and
    to stdout, both fetchers at once."""
    url, server = peerjs_server
    src = make_file(procs.workdir / "src.bin", 3_000_000)
    seed, link = procs.seed(src, None, "--peerjs", url, "--no-lan")
    assert f"peerjs={quote(url, safe='')}" in link
    seed.wait_for(lambda p: events_of(p, "announced"), 30, "the seeder on the PeerJS server")
    only = peerjs_only(link, url)
    f = procs.fetch(only, "-o", "out.bin", "--no-lan", name="to-file")
    with open(procs.workdir / "piped.bin", "wb") as sink:
        p = procs.fetch(only, "-o", "-", "--no-lan", name="to-stdout", stdout=sink)
        assert p.wait(60) == 0, p.stderr
    assert f.wait(60) == 0, f.stderr
    assert sha256(procs.workdir / "out.bin") == sha256(procs.workdir / "piped.bin") == \
        sha256(src)
    for fetcher in (f, p):
        assert not events_of(fetcher, "signaling-connected")  # no signaling server at all
        [announced] = events_of(fetcher, "announced")
        assert announced["via"] == "peerjs" and announced["url"] == str(pj.parse_server(url))
        joined = events_of(fetcher, "peer-joined")
        assert any(j["peer"].startswith("pj0:") for j in joined), joined
        # The other fetcher may be met through the seeder by peer exchange (px:) instead.
        assert all(j["peer"].startswith(("pj0:", "px:")) for j in joined), joined
    seed.signal(signal.SIGINT)
    assert seed.wait(30) == 0, seed.stderr
    assert "error" not in server.stderr, server.stderr


@pytest.mark.timeout(120)
def test_the_swarm_outlives_its_first_seeder_through_the_peerjs_server(procs: Procs,
                                                                       peerjs_server):
    """A seeds (embedded server + PeerJS), B fetches with --seed-after, A quits: C, given
    A's link, cannot reach A's server but meets B on the PeerJS server and completes."""
    url, _ = peerjs_server
    src = make_file(procs.workdir / "src.bin", 2_000_000)
    a, link = procs.seed(src, None, "--peerjs", url, "--no-lan", name="A")
    b = procs.fetch(link, "-o", "b.bin", "--seed-after", "--no-lan", name="B")
    b.wait_for(lambda p: events_of(p, "seeding"), 60, "B seeding")
    a.signal(signal.SIGINT)
    assert a.wait(30) == 0, a.stderr
    c = procs.fetch(link, "-o", "c.bin", "--no-lan", name="C")
    assert c.wait(60) == 0, c.stderr
    assert sha256(procs.workdir / "c.bin") == sha256(src)
    assert not events_of(c, "signaling-connected")  # A's server went with A
    senders = [j["peer"] for j in events_of(c, "peer-joined")]
    assert senders and all(s.startswith("pj0:") for s in senders), senders


@pytest.mark.timeout(120)
@pytest.mark.parametrize("bad", ["down", "wrong key"])
def test_a_bad_peerjs_server_costs_a_warning_or_one_line(procs: Procs, signal_url: str,
                                                         peerjs_server, bad: str):
    url, _ = peerjs_server
    bad_url = f"http://127.0.0.1:{free_port()}" if bad == "down" else f"{url}/?key=wrong"
    src = make_file(procs.workdir / "src.bin", 500_000)
    _, link = procs.seed(src, signal_url, "--no-lan")
    f = procs.fetch(link, "-o", "out.bin", "--peerjs", bad_url, "--no-lan")
    assert f.wait(60) == 0, f.stderr  # the signaling server works: a warning at most
    assert sha256(procs.workdir / "out.bin") == sha256(src)
    line = one_line_error(procs.fetch(peerjs_only(link, bad_url), "-o", "x.bin", "--no-lan",
                                      name="alone"), 4)
    shown = str(pj.parse_server(bad_url))
    assert f"PeerJS server {shown}" in line, line
    assert ("could not be reached" if bad == "down" else "refused us: Invalid key") in line
    assert not (procs.workdir / "x.bin").exists()
