"""The code exchange (p2pcli/wormhole/pake.py): SPAKE2 over signaling, binding the DTLS
fingerprints. Plain function calls: what each side decides for each message it gets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pcli.errors import ExitCode
from p2pcli.wormhole import pake
from p2pcli.wormhole.code import parse
from p2pcli.wormhole.pake import Receiver, Sender, Verdict, sdp_fingerprint

CODE = parse("7-guitarist-revenge")
OTHER = parse("7-guitarist-aardvark")
OFFER = {"name": "movie.mkv", "size": 123, "hash": "ab" * 32, "from": "alice"}
FP_R = "sha-256 " + ":".join(["AA"] * 32)  # the receiver's certificate
FP_S = "sha-256 " + ":".join(["BB"] * 32)  # the sender's
FP_M = "sha-256 " + ":".join(["CC"] * 32)  # a man in the middle's


def hello(sender: Sender, receiver: Receiver, peer: str = "r1", now: float = 0.0) -> dict:
    return receiver.on_hello(sender.on_hello(peer, receiver.start(), now))


def run(sender: Sender, receiver: Receiver, peer: str = "r1", *, fp_seen_by_sender: str = FP_R,
        fp_seen_by_receiver: str = FP_S) -> tuple[Verdict, Verdict]:
    """A whole exchange; the fingerprints each side sees are what the server relayed.
    Returns (the sender's verdict on 3, the receiver's on 4)."""
    assert hello(sender, receiver, peer) == OFFER
    verdict, refusal = sender.on_offer(peer, receiver.offer_tags(FP_R), fp_seen_by_sender)
    if verdict is not Verdict.OK:
        assert refusal == {"v": 1, "error": verdict.value}
        with pytest.raises(pake.P2PError) as err:
            receiver.on_answer(refusal, FP_S)
        assert err.value.exit_code == pake.error_for(verdict, "").exit_code
        return verdict, verdict
    return verdict, receiver.on_answer(sender.answer_tags(peer, FP_S), fp_seen_by_receiver)


def test_same_code_admits_the_receiver_and_opens_the_offer():
    sender = Sender(CODE, OFFER)
    r = Receiver(parse("007 Guitarist Revenge"))  # as typed: normalised to the same code
    assert run(sender, r) == (Verdict.OK, Verdict.OK)
    assert sender.is_admitted("r1") and not sender.is_admitted("r2")
    assert sender.finished(0.0) and sender.failure() is None


def test_offer_is_sealed():
    """The signaling server never sees the name or the hash: message 2 carries them sealed."""
    message = Sender(CODE, OFFER).on_hello("r", Receiver(CODE).start(), 0.0)
    text = str(message)
    assert "movie" not in text and "ab" * 32 not in text and "alice" not in text
    assert set(message) == {"v", "pake", "key", "offer"}


def test_wrong_code_fails_both_sides_and_spends_the_try():
    sender = Sender(CODE, OFFER)
    r = Receiver(OTHER)
    with pytest.raises(pake.WrongCode, match="wrong code") as err:
        hello(sender, r)
    assert err.value.exit_code == ExitCode.WRONG_CODE
    # the receiver tells the sender, with its key tag: the sender judges for itself
    assert sender.on_notice("r1", r.decline("wrong-code")) is Verdict.WRONG_CODE
    assert sender.finished(0.0)  # one try per code by default: the sender stops
    failure = sender.failure()
    assert isinstance(failure, pake.WrongCode) and failure.exit_code == ExitCode.WRONG_CODE
    # the right code afterwards is refused: the code is closed
    refusal = sender.on_hello("r2", Receiver(CODE).start(), 1.0)
    assert refusal == {"v": 1, "error": "closed"}
    with pytest.raises(pake.CodeRefused, match="closed this code"):
        Receiver(CODE).on_hello(refusal)


def test_a_lying_notice_does_not_pass_for_a_wrong_code():
    sender = Sender(CODE, OFFER)
    r = Receiver(CODE)
    hello(sender, r)
    assert sender.on_notice("r1", r.decline("wrong-code")) == "wrong-code"  # key tag is right
    assert "left before" in sender.failure().message  # reported as what it is, not a guess


def test_wrong_code_caught_by_the_sender_on_the_offer():
    """A receiver that goes on after a failed key tag (or an attacker) is refused at 3."""
    sender = Sender(CODE, OFFER)
    x = Receiver(OTHER)
    with pytest.raises(pake.WrongCode):
        hello(sender, x)
    x.verdict = Verdict.OK  # a buggy or hostile receiver carries on
    verdict, refusal = sender.on_offer("r1", x.offer_tags(FP_R), FP_R)
    assert verdict is Verdict.WRONG_CODE and refusal == {"v": 1, "error": "wrong-code"}
    assert not sender.is_admitted("r1")


def test_tries_allow_a_retry():
    sender = Sender(CODE, OFFER, tries=2)
    r = Receiver(OTHER)
    with pytest.raises(pake.WrongCode):
        hello(sender, r)
    sender.on_notice("r1", r.decline("wrong-code"))
    assert not sender.finished(0.0)
    assert run(sender, Receiver(CODE), "r2") == (Verdict.OK, Verdict.OK)
    assert sender.is_admitted("r2")


def test_receiver_fingerprint_swapped_is_caught_before_the_sender_answers():
    sender = Sender(CODE, OFFER)
    assert run(sender, Receiver(CODE), fp_seen_by_sender=FP_M) == (
        Verdict.TAMPERED, Verdict.TAMPERED)
    assert not sender.is_admitted("r1")
    err = sender.failure()
    assert isinstance(err, pake.Tampered) and err.exit_code == ExitCode.TAMPERED
    assert "tampered" in err.message


def test_sender_fingerprint_swapped_is_caught_before_the_receiver_connects():
    sender = Sender(CODE, OFFER)
    r = Receiver(CODE)
    assert run(sender, r, fp_seen_by_receiver=FP_M) == (Verdict.OK, Verdict.TAMPERED)
    # the receiver tells the sender; the code is then burnt
    assert sender.on_notice("r1", r.decline("tampered")) is Verdict.TAMPERED
    assert not sender.is_admitted("r1") and sender.finished(0.0)
    assert isinstance(sender.failure(), pake.Tampered)


def test_missing_fingerprints_are_never_trusted():
    assert run(Sender(CODE, OFFER), Receiver(CODE), fp_seen_by_sender="")[0] is Verdict.TAMPERED
    assert run(Sender(CODE, OFFER), Receiver(CODE), fp_seen_by_receiver="")[1] is Verdict.TAMPERED


def test_replayed_messages_do_not_pass():
    s1, r1 = Sender(CODE, OFFER), Receiver(CODE)
    m2 = s1.on_hello("r1", r1.start(), 0.0)
    r1.on_hello(m2)
    m3 = r1.offer_tags(FP_R)
    assert s1.on_offer("r1", m3, FP_R)[0] is Verdict.OK
    m4 = s1.answer_tags("r1", FP_S)
    # the server replays the receiver's messages to a new exchange of the same code
    s2 = Sender(CODE, OFFER)
    m2b = s2.on_hello("m", r1.start(), 0.0)
    assert s2.on_offer("m", m3, FP_R) == (None, None)  # names r1's exchange: ignored
    # rewriting `to` (a man in the middle can) only brings the tags' verdict back
    to = pake._exchange_id(pake._unb64(m2b["pake"], "pake"))
    assert s2.on_offer("m", {**m3, "to": to}, FP_R)[0] is Verdict.WRONG_CODE
    # ... and the sender's old messages to a new receiver
    r2 = Receiver(CODE)
    with pytest.raises(pake.WrongCode):
        r2.on_hello(m2)
    r3 = Receiver(CODE)
    s3 = Sender(CODE, OFFER)
    r3.on_hello(s3.on_hello("r", r3.start(), 0.0))
    r3.offer_tags(FP_R)
    assert r3.on_answer(m4, FP_S) is Verdict.TAMPERED
    # a sealed offer moved into another exchange does not open
    r4, s4 = Receiver(CODE), Sender(CODE, OFFER)
    fresh = s4.on_hello("r", r4.start(), 0.0)
    with pytest.raises(pake.BadMessage, match="does not open"):
        r4.on_hello({**fresh, "offer": m2["offer"]})


def test_racing_receivers_one_wins():
    sender = Sender(CODE, OFFER)
    first, second = Receiver(CODE), Receiver(CODE)
    m2 = sender.on_hello("r1", first.start(), 0.0)
    refusal = sender.on_hello("r2", second.start(), 0.0)  # while r1 is in flight
    assert refusal == {"v": 1, "error": "used"}
    with pytest.raises(pake.CodeRefused, match="another receiver"):
        second.on_hello(refusal)
    first.on_hello(m2)
    assert sender.on_offer("r1", first.offer_tags(FP_R), FP_R)[0] is Verdict.OK
    assert sender.on_hello("r3", Receiver(CODE).start(), 1.0)["error"] == "used"


def test_expiry_and_timeouts():
    sender = Sender(CODE, OFFER, expires_at=100.0, confirm_timeout=10.0)
    assert sender.timer() == 100.0 and not sender.finished(50.0)
    assert "pake" in sender.on_hello("r1", Receiver(CODE).start(), 95.0)
    assert sender.timer() == 100.0
    sender.on_timer(105.0)  # r1 never offered nor declined: its try is spent
    assert sender.finished(105.0)
    assert "left before finishing" in sender.failure().message
    late = Sender(CODE, OFFER, tries=3, expires_at=100.0)
    assert late.on_hello("r", Receiver(CODE).start(), 100.0) == {"v": 1, "error": "expired"}
    assert late.finished(100.0) and "expired" in late.failure().message
    with pytest.raises(pake.CodeRefused, match="expired"):
        Receiver(CODE).on_hello({"v": 1, "error": "expired"})


def test_peer_gone_spends_its_try_and_declining_is_said():
    sender = Sender(CODE, OFFER)
    sender.on_hello("r1", Receiver(CODE).start(), 0.0)
    sender.on_peer_gone("r1")
    assert sender.finished(0.0) and isinstance(sender.failure(), pake.CodeRefused)
    s2, r2 = Sender(CODE, OFFER), Receiver(CODE)
    hello(s2, r2)
    assert s2.on_notice("r1", r2.decline("declined")) == "declined"
    assert s2.failure().message == "the receiver declined the share"


@pytest.mark.parametrize("message, says", [
    ("nope", "not an object"),
    ({"v": 2, "pake": "AA"}, "version 2"),
    ({"v": 1}, "missing or not base64"),
    ({"v": 1, "pake": "!!!"}, "base64"),
    ({"v": 1, "pake": "AAAA"}, "not a SPAKE2 message"),
])
def test_bad_messages_are_refused(message: object, says: str):
    with pytest.raises(pake.BadMessage, match=says):
        Sender(CODE, OFFER).on_hello("r", message, 0.0)


def test_out_of_order_messages():
    sender = Sender(CODE, OFFER, tries=3)
    with pytest.raises(pake.BadMessage, match="without a hello"):
        sender.on_offer("r", {"v": 1, "key": "AA", "fp": "AA"}, FP_R)
    with pytest.raises(pake.BadMessage, match="without a hello"):
        sender.on_notice("r", {"v": 1, "error": "declined"})
    sender.on_hello("r", Receiver(CODE).start(), 0.0)
    with pytest.raises(pake.BadMessage, match="second hello"):
        sender.on_hello("r", Receiver(CODE).start(), 0.0)
    with pytest.raises(RuntimeError):
        sender.answer_tags("r", FP_S)  # not admitted
    with pytest.raises(RuntimeError):
        Receiver(CODE).offer_tags(FP_R)  # no message 2 yet


def test_sdp_fingerprint_is_canonical():
    sdp = ("v=0\r\na=fingerprint:SHA-256 aa:bb\r\nm=application 9\r\n"
           "a=fingerprint:sha-1 cc:dd\r\na=fingerprint:sha-256 AA:BB\r\n")
    assert sdp_fingerprint(sdp) == "sha-1 CC:DD,sha-256 AA:BB"
    assert sdp_fingerprint({"type": "offer", "sdp": sdp}) == "sha-1 CC:DD,sha-256 AA:BB"
    assert sdp_fingerprint("v=0\r\n") == "" and sdp_fingerprint(None) == ""


def test_tries_must_be_positive():
    with pytest.raises(ValueError):
        Sender(CODE, OFFER, tries=0)


fingerprints = st.sampled_from([FP_R, FP_S, FP_M, ""])


@settings(max_examples=40, deadline=None)
@given(codes=st.tuples(st.sampled_from([CODE, OTHER]), st.sampled_from([CODE, OTHER])),
       seen_by_sender=fingerprints, seen_by_receiver=fingerprints)
def test_admitted_only_with_the_same_code_and_the_true_fingerprints(
        codes, seen_by_sender: str, seen_by_receiver: str):
    """Whatever the server relays: the sender admits and the receiver connects exactly when
    both used one code and each saw the other's real fingerprint."""
    sender, receiver = Sender(codes[0], OFFER), Receiver(codes[1])
    honest = codes[0] == codes[1] and seen_by_sender == FP_R and seen_by_receiver == FP_S
    try:
        receiver.on_hello(sender.on_hello("r", receiver.start(), 0.0))
    except pake.WrongCode:
        assert codes[0] != codes[1]
        assert sender.on_notice("r", receiver.decline("wrong-code")) is Verdict.WRONG_CODE
        assert not sender.is_admitted("r") and not honest
        return
    _, refusal = sender.on_offer("r", receiver.offer_tags(FP_R), seen_by_sender)
    if refusal is not None:
        assert not honest and not sender.is_admitted("r")
        return
    ok = receiver.on_answer(sender.answer_tags("r", FP_S), seen_by_receiver)
    assert (ok is Verdict.OK) == honest


# -- pake.Seeder: a `receive --seed-after` receiver serving the code on -------------------


def test_seeder_serves_every_peer_that_proves_the_code():
    """One try (the default) serves receiver after receiver: a proof gives the try back."""
    seeder = pake.Seeder(CODE, OFFER)
    for peer in ("r1", "r2", "r3"):
        assert run(seeder, Receiver(CODE), peer) == (Verdict.OK, Verdict.OK)
        assert seeder.is_admitted(peer) and seeder.tries_left == 1
    assert not seeder.finished(0.0) and not seeder.stopped(0.0)
    seeder.on_peer_gone("r1")
    assert not seeder.is_admitted("r1") and seeder.is_admitted("r2")


def test_seeder_budget_is_its_tries_in_wrong_guesses():
    """Each serving peer adds exactly `tries` online guesses, never more: peers served
    between the guesses give nothing back to a guesser. Then the code is closed to all."""
    seeder = pake.Seeder(CODE, OFFER, tries=2)
    for i in range(2):
        assert run(seeder, Receiver(CODE), f"ok{i}")[0] is Verdict.OK
        guess = Receiver(OTHER)
        reply = seeder.on_hello(f"guess{i}", guess.start(), 0.0)
        with pytest.raises(pake.WrongCode):
            guess.on_hello(reply)
        assert seeder.on_notice(f"guess{i}", guess.decline("wrong-code")) is Verdict.WRONG_CODE
    for peer, code in (("guess2", OTHER), ("ok2", CODE)):
        assert seeder.on_hello(peer, Receiver(code).start(), 0.0)["error"] == "closed"
    assert seeder.finished(0.0)
    assert not seeder.stopped(0.0)  # served peers are still connected: not cut
    for i in range(2):
        seeder.on_peer_gone(f"ok{i}")
    assert seeder.stopped(0.0) and seeder.failure().exit_code == ExitCode.WRONG_CODE


def test_seeder_is_busy_while_an_exchange_holds_its_try():
    """A second receiver while the first one's exchange is in flight hears "busy" (it
    asks another peer, or retries); once the first proves the code, the try is back."""
    seeder = pake.Seeder(CODE, OFFER)
    first = Receiver(CODE)
    hello(seeder, first, "r1")
    assert seeder.on_hello("r2", Receiver(CODE).start(), 0.0)["error"] == "busy"
    with pytest.raises(pake.CodeRefused) as err:
        Receiver(CODE).on_hello({"v": 1, "error": "busy"})
    assert err.value.reason == "busy" and "busy" in pake.PASS_ON
    seeder.on_offer("r1", first.offer_tags(FP_R), FP_R)
    assert run(seeder, Receiver(CODE), "r2") == (Verdict.OK, Verdict.OK)


def test_seeder_declined_with_the_key_gives_the_try_back_a_tampered_one_burns_it():
    seeder = pake.Seeder(CODE, OFFER)
    r = Receiver(CODE)
    hello(seeder, r, "r1")
    assert seeder.on_notice("r1", r.decline("declined")) == "declined"
    assert seeder.tries_left == 1  # it proved the code: not a guess
    assert run(seeder, Receiver(CODE), "r2", fp_seen_by_receiver=FP_M) == (
        Verdict.OK, Verdict.TAMPERED)
    assert seeder.on_notice("r2", {"v": 1, "error": "tampered"}) is Verdict.TAMPERED
    assert seeder.tries_left == 0 and seeder.stopped(0.0)
    assert seeder.failure().exit_code == ExitCode.TAMPERED


def test_a_sender_that_admitted_someone_passes_a_new_receiver_on():
    """The original sender, still there, answers "used": a refusal that sends the new
    receiver on to the room's next peer (a seed-after receiver), not an error at once."""
    sender = Sender(CODE, OFFER)
    run(sender, Receiver(CODE), "r1")
    reply = sender.on_hello("r2", Receiver(CODE).start(), 0.0)
    with pytest.raises(pake.CodeRefused) as err:
        Receiver(CODE).on_hello(reply)
    assert err.value.reason in pake.PASS_ON


@pytest.mark.parametrize("ordered", [True, False], ids=["socketio", "tracker"])
def test_a_receiver_asks_the_rooms_peers_until_one_serves(ordered: bool):
    """transfer._hello over a fake room: the sender (admitted someone: "used"), a plain
    receiver ("not-serving"), then a seed-after receiver that serves. Socket.IO asks them
    one at a time, oldest first, so only the one that serves spends a try; a tracker
    broadcasts, and the first real answer wins."""
    import asyncio

    from p2pcli.signaling.client import SignalingClient
    from p2pcli.wormhole import transfer
    from p2pcli.wormhole.relays import BROADCAST

    sender = Sender(CODE, OFFER)
    run(sender, Receiver(CODE), "r0")
    seeder = pake.Seeder(CODE, OFFER)
    asked: list[str] = []
    tasks: list = []

    class Room:
        url, urls = "fake", ["fake"]

        async def send(self, kind: str, peer: str, payload: dict) -> None:
            w = payload["wormhole"]
            for p in (["s", "r", "seeder"] if peer == BROADCAST else [peer]):
                asked.append(p)
                reply = {"s": lambda: sender.on_hello("new", w, 0.0),
                         "r": lambda: {"v": 1, "error": "not-serving"},
                         "seeder": lambda: seeder.on_hello("new", w, 0.0)}[p]()
                tasks.append(asyncio.ensure_future(
                    dispatch.handlers().signal("answer", p, {"wormhole": reply})))

        async def close(self) -> None:
            pass

    class OrderedRoom(Room, SignalingClient):
        def __init__(self) -> None:
            pass

    dispatch = transfer._Dispatch()
    client = OrderedRoom() if ordered else Room()
    peers = ["s", "r", "seeder"] if ordered else [BROADCAST]
    peer, sealed = asyncio.run(transfer._hello(client, dispatch, Receiver(CODE), CODE, peers))
    assert peer == "seeder" and sealed == OFFER and asked == ["s", "r", "seeder"]


def test_a_tracker_receiver_that_took_another_answer_costs_a_seeder_nothing():
    """Issue 18: over a tracker/PeerJS a receiver's hello, message 3 and notices reach
    every peer in the room. Two seed-after receivers with --tries 1 both answer; the
    receiver takes A's answer, so B must not judge A's message 3 or a notice against its
    own session (that was a wrong code: B closed the code and exited 8)."""
    a, b = pake.Seeder(CODE, OFFER, tries=1), pake.Seeder(CODE, OFFER, tries=1)
    r = Receiver(CODE)
    m1 = r.start()
    m2a, m2b = a.on_hello("r", m1, 0.0), b.on_hello("r", m1, 0.0)
    assert r.on_hello(m2a) == OFFER
    m3 = r.offer_tags(FP_R)
    assert b.on_offer("r", m3, FP_R) == (None, None)
    assert b.on_notice("r", r.decline("tampered")) is None
    assert a.on_offer("r", m3, FP_R)[0] is Verdict.OK
    assert not b.failures and not b.stopped(0.0) and b.tries_left == 0
    # the receiver releases B's late answer with a proof: B takes its try back at once
    released = r.release(m2b)
    assert a.on_notice("r", released) is None  # not A's exchange
    assert b.on_notice("r", released) == "elsewhere" and b.tries_left == 1
    assert b.failure().exit_code != ExitCode.WRONG_CODE
    assert run(b, Receiver(CODE), "r2") == (Verdict.OK, Verdict.OK)
    # a release lost on the way: B's answer times out as abandoned, never a wrong guess
    c = pake.Seeder(CODE, OFFER, tries=1)
    c.on_hello("r", m1, 0.0)
    assert c.on_offer("r", m3, FP_R) == (None, None)
    c.on_timer(c.confirm_timeout)
    assert c.failures == [("r", "timeout")] and c.failure().exit_code != ExitCode.WRONG_CODE
    # a peer that refused the hello ("busy") has no exchange with r: ignored, not an error
    assert c.on_offer("r", m3, FP_R) == (None, None)
    # only a serving peer of our code is released; a refusal or a wrong code is not
    assert r.release({"v": 1, "error": "busy"}) is None
    assert r.release(pake.Seeder(OTHER, OFFER).on_hello("r", m1, 0.0)) is None
    # ... and after that guess nobody is: whether a release comes back would answer more
    assert r.release(pake.Seeder(CODE, OFFER).on_hello("r", m1, 0.0)) is None


@pytest.mark.parametrize("serving", [True, False])
def test_a_receiver_hearing_closed_asks_the_next_peer(serving: bool):
    """A seed-after receiver whose tries are spent answers "closed": that closes the code
    there only. Over a tracker the receiver waits for another peer that serves; "closed"
    is what it reports only when nobody does. A second serving peer whose answer came
    later is released (`elsewhere`) and has its try back, though the receiver is still
    at its prompt (no meeting yet)."""
    import asyncio

    from p2pcli.wormhole import transfer
    from p2pcli.wormhole.relays import BROADCAST

    closed = pake.Seeder(CODE, OFFER)
    closed.tries_left = 0
    seeder, late = pake.Seeder(CODE, OFFER), pake.Seeder(CODE, OFFER)
    peers = {"closed": closed, "r": None, **({"seeder": seeder, "late": late} if serving
                                             else {})}
    tasks: list = []

    class Room:
        url, urls = "fake", ["fake"]

        async def send(self, kind: str, peer: str, payload: dict) -> None:
            w = payload["wormhole"]
            if kind == "ice-candidate":  # a notice: to that peer only
                peers[peer].on_notice("new", w)
                return
            for p, state in peers.items():  # in this order
                reply = state.on_hello("new", w, 0.0) if state else {"v": 1,
                                                                    "error": "not-serving"}
                tasks.append(asyncio.ensure_future(
                    dispatch.handlers().signal("answer", p, {"wormhole": reply})))

        async def close(self) -> None:
            pass

    dispatch = transfer._Dispatch()
    run_hello = transfer._hello(Room(), dispatch, Receiver(CODE), CODE, [BROADCAST])
    if serving:
        async def hello_then_late_answers() -> tuple:
            got = await run_hello
            await asyncio.gather(*tasks)
            return got

        assert asyncio.run(hello_then_late_answers()) == ("seeder", OFFER)
        assert late.tries_left == 1 and late.failures == [("new", "elsewhere")]
        assert seeder.tries_left == 0  # its exchange goes on (message 3 is next)
    else:
        transfer.REFUSAL_GRACE, grace = 0.1, transfer.REFUSAL_GRACE
        try:
            with pytest.raises(pake.CodeRefused) as err:
                asyncio.run(run_hello)
        finally:
            transfer.REFUSAL_GRACE = grace
        assert err.value.reason == "closed"
