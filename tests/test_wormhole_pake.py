"""The code exchange (p2pcli/wormhole/pake.py): SPAKE2 over signaling, binding the DTLS
fingerprints. Plain function calls: what each side decides for each message it gets."""

from __future__ import annotations

import copy

import pytest

from p2pcli.errors import ExitCode
from p2pcli.wormhole import pake
from p2pcli.wormhole.code import parse
from p2pcli.wormhole.pake import Receiver, Sender, Verdict, sdp_fingerprint

CODE = parse("7-guitarist-revenge")
FP_R = "sha-256 " + ":".join(["AA"] * 32)  # the receiver's certificate
FP_S = "sha-256 " + ":".join(["BB"] * 32)  # the sender's
FP_M = "sha-256 " + ":".join(["CC"] * 32)  # a man in the middle's


def run(sender: Sender, receiver: Receiver, peer: str = "r1", *, fp_seen_by_sender: str = FP_R,
        fp_seen_by_receiver: str = FP_S, now: float = 0.0) -> tuple[Verdict, Verdict]:
    """One whole exchange; the fingerprints each side sees are what the server relayed."""
    answer = sender.on_offer(peer, receiver.start(), fp_seen_by_sender, FP_S, now)
    confirm = receiver.on_answer(answer, fp_seen_by_receiver)
    return receiver.verdict, sender.on_confirm(peer, confirm)


def test_same_code_admits_the_receiver():
    sender = Sender(CODE)
    r = Receiver(parse("007 Guitarist Revenge"), FP_R)  # as typed: normalised to the same code
    assert run(sender, r) == (Verdict.OK, Verdict.OK)
    assert sender.is_admitted("r1") and not sender.is_admitted("r2")
    assert sender.finished(0.0) and sender.failure() is None


def test_wrong_code_fails_both_sides_and_spends_the_try():
    sender = Sender(CODE)
    r = Receiver(parse("7-guitarist-aardvark"), FP_R)
    assert run(sender, r) == (Verdict.WRONG_CODE, Verdict.WRONG_CODE)
    assert not sender.is_admitted("r1")
    assert sender.finished(0.0)  # one try per code by default: the sender stops
    err = sender.failure()
    assert isinstance(err, pake.WrongCode) and err.exit_code == ExitCode.WRONG_CODE
    assert "wrong code" in err.message
    # the right code afterwards is refused: the code is closed
    answer = sender.on_offer("r2", Receiver(CODE, FP_R).start(), FP_R, FP_S, 1.0)
    assert answer == {"v": 1, "error": "closed"}
    with pytest.raises(pake.CodeRefused, match="closed this code"):
        Receiver(CODE, FP_R).on_answer(answer, FP_S)


def test_tries_allow_a_retry():
    sender = Sender(CODE, tries=2)
    assert run(sender, Receiver(parse("7-guitarist-aardvark"), FP_R))[1] is Verdict.WRONG_CODE
    assert not sender.finished(0.0)
    assert run(sender, Receiver(CODE, FP_R), "r2") == (Verdict.OK, Verdict.OK)
    assert sender.is_admitted("r2")


@pytest.mark.parametrize("swap", ["sender", "receiver", "both"])
def test_swapped_fingerprint_is_caught_on_both_sides(swap: str):
    """A signaling server that puts its own certificate's fingerprint in an SDP it relays."""
    sender = Sender(CODE)
    verdicts = run(sender, Receiver(CODE, FP_R),
                   fp_seen_by_sender=FP_M if swap in ("receiver", "both") else FP_R,
                   fp_seen_by_receiver=FP_M if swap in ("sender", "both") else FP_S)
    assert verdicts == (Verdict.TAMPERED, Verdict.TAMPERED)
    assert not sender.is_admitted("r1")
    err = sender.failure()
    assert isinstance(err, pake.Tampered) and err.exit_code == ExitCode.TAMPERED
    assert pake.error_for(Verdict.TAMPERED, "x").exit_code == ExitCode.TAMPERED


def test_relayed_tags_cannot_be_forged_or_replayed():
    # A replayed confirm from an earlier, successful exchange does not pass a new one.
    s1, r1 = Sender(CODE), Receiver(CODE, FP_R)
    a1 = s1.on_offer("r1", r1.start(), FP_R, FP_S, 0.0)
    c1 = r1.on_answer(a1, FP_S)
    assert s1.on_confirm("r1", c1) is Verdict.OK
    s2 = Sender(CODE)
    s2.on_offer("m", r1.start(), FP_R, FP_S, 0.0)  # the old offer, replayed by the server
    assert s2.on_confirm("m", c1) is Verdict.WRONG_CODE
    # The sender's old answer replayed to a new receiver: its tags do not check.
    r2 = Receiver(CODE, FP_R)
    r2.on_answer(a1, FP_S)
    assert r2.verdict is Verdict.WRONG_CODE
    # A tag altered in transit.
    s3, r3 = Sender(CODE), Receiver(CODE, FP_R)
    c3 = r3.on_answer(s3.on_offer("r", r3.start(), FP_R, FP_S, 0.0), FP_S)
    bad = copy.deepcopy(c3)
    bad["confirm"]["fp"] = c1["confirm"]["fp"]
    assert s3.on_confirm("r", bad) is Verdict.TAMPERED


def test_racing_receivers_one_wins():
    sender = Sender(CODE)
    first, second = Receiver(CODE, FP_R), Receiver(CODE, FP_M)
    a1 = sender.on_offer("r1", first.start(), FP_R, FP_S, 0.0)
    a2 = sender.on_offer("r2", second.start(), FP_M, FP_S, 0.0)  # while r1 is in flight
    assert a2 == {"v": 1, "error": "used"}
    with pytest.raises(pake.CodeRefused, match="another receiver"):
        second.on_answer(a2, FP_S)
    assert sender.on_confirm("r1", first.on_answer(a1, FP_S)) is Verdict.OK
    assert sender.on_offer("r3", Receiver(CODE, FP_R).start(), FP_R, FP_S, 1.0)["error"] == "used"


def test_expiry_and_timeouts():
    sender = Sender(CODE, expires_at=100.0, confirm_timeout=10.0)
    assert sender.timer() == 100.0 and not sender.finished(50.0)
    answer = sender.on_offer("r1", Receiver(CODE, FP_R).start(), FP_R, FP_S, 95.0)
    assert "pake" in answer and sender.timer() == 100.0
    sender.on_timer(105.0)  # r1 never confirmed: its try is spent
    assert sender.finished(105.0)
    assert "left before finishing" in sender.failure().message
    late = Sender(CODE, tries=3, expires_at=100.0)
    assert late.on_offer("r", Receiver(CODE, FP_R).start(), FP_R, FP_S, 100.0) == {
        "v": 1, "error": "expired"}
    assert late.finished(100.0) and "expired" in late.failure().message
    with pytest.raises(pake.CodeRefused, match="expired"):
        Receiver(CODE, FP_R).on_answer({"v": 1, "error": "expired"}, FP_S)


def test_peer_gone_spends_its_try():
    sender = Sender(CODE)
    sender.on_offer("r1", Receiver(CODE, FP_R).start(), FP_R, FP_S, 0.0)
    sender.on_peer_gone("r1")
    assert sender.finished(0.0) and isinstance(sender.failure(), pake.CodeRefused)


def test_missing_fingerprint_is_never_trusted():
    sender = Sender(CODE)
    assert run(sender, Receiver(CODE, FP_R), fp_seen_by_sender="", fp_seen_by_receiver=FP_S
               ) == (Verdict.TAMPERED, Verdict.TAMPERED)


@pytest.mark.parametrize("message, says", [
    ("nope", "not an object"),
    ({"v": 2, "pake": "AA"}, "version 2"),
    ({"v": 1}, "not base64"),
    ({"v": 1, "pake": "!!!"}, "base64"),
    ({"v": 1, "pake": "AAAA"}, "not a SPAKE2 message"),
])
def test_bad_messages_are_refused(message: object, says: str):
    with pytest.raises(pake.BadMessage, match=says):
        Sender(CODE).on_offer("r", message, FP_R, FP_S, 0.0)


def test_confirm_without_answer_and_second_offer():
    sender = Sender(CODE, tries=3)
    with pytest.raises(pake.BadMessage, match="without an answer"):
        sender.on_confirm("r", {"v": 1, "confirm": {"key": "AA", "fp": "AA"}})
    sender.on_offer("r", Receiver(CODE, FP_R).start(), FP_R, FP_S, 0.0)
    with pytest.raises(pake.BadMessage, match="second offer"):
        sender.on_offer("r", Receiver(CODE, FP_R).start(), FP_R, FP_S, 0.0)


def test_sdp_fingerprint_is_canonical():
    sdp = ("v=0\r\na=fingerprint:SHA-256 aa:bb\r\nm=application 9\r\n"
           "a=fingerprint:sha-1 cc:dd\r\na=fingerprint:sha-256 AA:BB\r\n")
    assert sdp_fingerprint(sdp) == "sha-1 CC:DD,sha-256 AA:BB"
    assert sdp_fingerprint("v=0\r\n") == ""


def test_tries_must_be_positive():
    with pytest.raises(ValueError):
        Sender(CODE, tries=0)
