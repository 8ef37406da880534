"""The code exchange: SPAKE2 over signaling, binding each side's DTLS fingerprint (issue 18).

Sans-IO. The adapter moves the `wormhole` objects below inside the signaling relays it
already sends (the receiver's `offer`, the sender's `answer`, then one more relay from the
receiver) and hands in the DTLS fingerprint of each SDP; this module says whether the peer
proved the code and whether the fingerprints both sides saw are the same. docs/PROTOCOL.md
section 4 is the specification; in short:

    receiver -> sender   {v, pake: X}                      (with the receiver's SDP offer)
    sender -> receiver   {v, pake: Y, confirm: {key, fp}}  (with the sender's SDP answer)
    receiver -> sender   {v, confirm: {key, fp}}
    sender -> receiver   {v, error: "used" | "closed" | "expired"}   (instead of an answer)

K = SPAKE2(code) from X and Y; each side MACs (HMAC-SHA256, keys from HKDF over K, one per
direction) the PAKE transcript (`key`) and the transcript plus both fingerprints as it saw
them (`fp`). A wrong code fails `key`; a server that swapped a fingerprint fails `fp`
only: the two are told apart, and each side checks the other's tags on its own, so
neither trusts the other to report a failure. Every answer the sender sends spends one
try, whatever follows, because its tags let the peer test one guess offline.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
from dataclasses import dataclass

from spake2 import SPAKE2_A, SPAKE2_B
from spake2.spake2 import SPAKEError

from p2pcli.errors import ExitCode, P2PError
from p2pcli.wormhole.code import VERSION, Code

#: Protocol version carried in every message as `v`.
PROTOCOL = 1
#: SPAKE2 identities: the receiver is side A, the sender side B (fixed roles; no reflection).
ID_RECEIVER, ID_SENDER = b"p2p-receiver", b"p2p-sender"
#: Default tries per code, as magic-wormhole: a guesser gets one.
DEFAULT_TRIES = 1


class Verdict(enum.Enum):
    """What a peer's tags say."""

    OK = "ok"
    WRONG_CODE = "wrong-code"  # the key tag fails: the peer used another code (or guessed)
    TAMPERED = "tampered"  # same key, other fingerprints: someone between us swapped them


class WrongCode(P2PError):
    """The peer's PAKE gave another key: a mistyped code, or someone guessing."""

    exit_code = ExitCode.WRONG_CODE


class Tampered(P2PError):
    """The code matched but the DTLS fingerprints did not: a man in the middle."""

    exit_code = ExitCode.TAMPERED


class CodeRefused(P2PError):
    """The sender refused: code used, closed after failed tries, or expired."""

    exit_code = ExitCode.NO_PEERS


class BadMessage(P2PError):
    """A `wormhole` object that is not what this step expects."""

    exit_code = ExitCode.TAMPERED


REFUSALS = {
    "used": "another receiver is using or has used this code; ask the sender for a new code",
    "closed": "the sender closed this code after a wrong try; ask the sender for a new code",
    "expired": "this code expired; ask the sender for a new code",
}


def sdp_fingerprint(sdp: str) -> str:
    """The DTLS fingerprints an SDP declares, canonical (algorithm lower case, hex upper case,
    sorted, joined with ','): what the tags bind. '' when there is none."""
    fps = set()
    for line in sdp.splitlines():
        if line.startswith("a=fingerprint:"):
            alg, _, value = line.split(":", 1)[1].strip().partition(" ")
            fps.add(f"{alg.lower()} {value.strip().upper()}")
    return ",".join(sorted(fps))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str) or len(text) > 256:
        raise BadMessage(f"bad code exchange message: {what} is not base64")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except ValueError:
        raise BadMessage(f"bad code exchange message: {what} is not base64") from None


def _hkdf(key: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) for one 32-byte output, salt empty (zeros)."""
    prk = hmac.new(b"\0" * 32, key, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def _frame(*parts: bytes) -> bytes:
    """Length-prefixed concatenation: no two part lists frame to the same bytes."""
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


@dataclass
class _Keys:
    """Both directions' MAC keys and the two transcripts of one exchange."""

    key: bytes
    x: bytes  # the receiver's PAKE message
    y: bytes  # the sender's
    room: str
    fp_receiver: str
    fp_sender: str

    def _transcripts(self) -> tuple[bytes, bytes]:
        pake = _frame(VERSION, self.room.encode(), self.x, self.y)
        return pake, _frame(pake, self.fp_receiver.encode(), self.fp_sender.encode())

    def tags(self, side: bytes) -> dict[str, str]:
        k = _hkdf(self.key, VERSION + b" confirm " + side)
        pake, full = self._transcripts()
        return {"key": _b64(hmac.new(k, b"key" + pake, hashlib.sha256).digest()),
                "fp": _b64(hmac.new(k, b"fp" + full, hashlib.sha256).digest())}

    def check(self, side: bytes, confirm: object) -> Verdict:
        if not isinstance(confirm, dict):
            raise BadMessage("bad code exchange message: no confirm tags")
        mine = self.tags(side)
        got_key = _unb64(confirm.get("key"), "confirm.key")
        got_fp = _unb64(confirm.get("fp"), "confirm.fp")
        if not hmac.compare_digest(got_key, _unb64(mine["key"], "key")):
            return Verdict.WRONG_CODE
        if not hmac.compare_digest(got_fp, _unb64(mine["fp"], "fp")):
            return Verdict.TAMPERED
        return Verdict.OK


def _check_version(message: object) -> dict:
    if not isinstance(message, dict):
        raise BadMessage("bad code exchange message: not an object")
    if message.get("v") != PROTOCOL:
        raise BadMessage(f"the peer speaks code exchange version {message.get('v')!r}, "
                         f"this p2p speaks {PROTOCOL}: update both to the same release")
    return message


def error_for(verdict: Verdict, who: str) -> P2PError | None:
    """The error a side reports for a failed verdict (None for OK), with what to do."""
    if verdict is Verdict.WRONG_CODE:
        return WrongCode(f"wrong code: {who} used another code (mistyped, or someone guessing); "
                        "nothing was sent; check the code and try again with a new one")
    if verdict is Verdict.TAMPERED:
        return Tampered("the connection was tampered with: the code matched but the DTLS "
                       "fingerprints the signaling server relayed did not (a man in the "
                       "middle); nothing was sent; use another signaling server")
    return None


class Receiver:
    """The receiving side of one exchange with one sender."""

    def __init__(self, code: Code, fingerprint: str) -> None:
        self.code = code
        self.fingerprint = fingerprint
        self._spake = SPAKE2_A(code.password(), idA=ID_RECEIVER, idB=ID_SENDER)
        self._x = self._spake.start()
        self.verdict: Verdict | None = None

    def start(self) -> dict:
        """The `wormhole` object of the receiver's offer."""
        return {"v": PROTOCOL, "pake": _b64(self._x)}

    def on_answer(self, message: object, sender_fingerprint: str) -> dict:
        """Take the sender's answer (its `wormhole` object and its SDP's fingerprint);
        return the confirm object to send back (always, so the sender judges for itself),
        and set `verdict`. A refusal raises CodeRefused; raise `error_for(verdict)` after
        sending the confirm."""
        message = _check_version(message)
        if "error" in message:
            raise CodeRefused(REFUSALS.get(str(message["error"]),
                                           f"the sender refused: {message['error']}"))
        if self.verdict is not None:
            raise BadMessage("bad code exchange message: a second answer")
        y = _unb64(message.get("pake"), "pake")
        try:
            key = self._spake.finish(y)
        except SPAKEError:
            raise BadMessage("bad code exchange message: not a SPAKE2 message") from None
        keys = _Keys(key, self._x, y, self.code.room(), self.fingerprint, sender_fingerprint)
        self.verdict = keys.check(ID_SENDER, message.get("confirm"))
        if not sender_fingerprint and self.verdict is Verdict.OK:
            self.verdict = Verdict.TAMPERED  # nothing bound: refuse, never trust blind
        self.key = keys.key
        return {"v": PROTOCOL, "confirm": keys.tags(ID_RECEIVER)}


@dataclass
class _Attempt:
    keys: _Keys
    started: float


@dataclass
class Sender:
    """The sending side: answers receivers' offers while tries remain, and admits the
    first peer whose tags check out. Time is passed in (`now`)."""

    code: Code
    tries: int = DEFAULT_TRIES
    expires_at: float | None = None
    """After this time no new offer is answered ("expired"); None: never."""
    confirm_timeout: float = 60.0
    """An answered peer that sends no confirm within this is a failed try."""

    def __post_init__(self) -> None:
        if self.tries < 1:
            raise ValueError("tries must be at least 1")
        self.tries_left = self.tries
        self.admitted: str | None = None
        self.failures: list[tuple[str, Verdict | str]] = []
        self._attempts: dict[str, _Attempt] = {}

    def on_offer(self, peer: str, message: object, peer_fingerprint: str, my_fingerprint: str,
                 now: float) -> dict:
        """A receiver's offer: the `wormhole` object to answer with (a PAKE answer, which
        spends a try, or a refusal, which does not)."""
        message = _check_version(message)
        if self.admitted is not None:
            return {"v": PROTOCOL, "error": "used"}
        if self.expires_at is not None and now >= self.expires_at:
            return {"v": PROTOCOL, "error": "expired"}
        if peer in self._attempts:
            raise BadMessage("bad code exchange message: a second offer from one peer")
        if self.tries_left <= 0:
            # Racing receivers: the one in flight may still succeed, say it is taken.
            return {"v": PROTOCOL, "error": "used" if self._attempts else "closed"}
        x = _unb64(message.get("pake"), "pake")
        spake = SPAKE2_B(self.code.password(), idA=ID_RECEIVER, idB=ID_SENDER)
        y = spake.start()
        try:
            key = spake.finish(x)
        except SPAKEError:
            raise BadMessage("bad code exchange message: not a SPAKE2 message") from None
        self.tries_left -= 1
        keys = _Keys(key, x, y, self.code.room(), peer_fingerprint, my_fingerprint)
        self._attempts[peer] = _Attempt(keys, now)
        return {"v": PROTOCOL, "pake": _b64(y), "confirm": keys.tags(ID_SENDER)}

    def on_confirm(self, peer: str, message: object) -> Verdict:
        """A receiver's confirm: OK admits the peer (only it is ever served)."""
        message = _check_version(message)
        attempt = self._attempts.pop(peer, None)
        if attempt is None:
            raise BadMessage("bad code exchange message: a confirm without an answer")
        verdict = attempt.keys.check(ID_RECEIVER, message.get("confirm"))
        if verdict is Verdict.OK and not attempt.keys.fp_receiver:
            verdict = Verdict.TAMPERED
        if verdict is Verdict.OK and self.admitted is None:
            self.admitted = peer
        elif verdict is not Verdict.OK:
            self.failures.append((peer, verdict))
        return verdict

    def on_peer_gone(self, peer: str) -> None:
        """The peer left before confirming: its try stays spent."""
        if self._attempts.pop(peer, None) is not None:
            self.failures.append((peer, "gone"))

    def timer(self) -> float | None:
        """When `on_timer` next has something to do."""
        times = [a.started + self.confirm_timeout for a in self._attempts.values()]
        if self.expires_at is not None and self.admitted is None:
            times.append(self.expires_at)
        return min(times, default=None)

    def on_timer(self, now: float) -> None:
        for peer, a in list(self._attempts.items()):
            if now >= a.started + self.confirm_timeout:
                del self._attempts[peer]
                self.failures.append((peer, "timeout"))

    def is_admitted(self, peer: str) -> bool:
        """Whether `peer` proved the code: the only peer pieces go to."""
        return peer == self.admitted

    def finished(self, now: float) -> bool:
        """No receiver can succeed any more: admitted one, or no tries / time left and
        nothing in flight. The adapter then stops (after serving the admitted peer)."""
        if self.admitted is not None:
            return True
        if self._attempts:
            return False
        return self.tries_left <= 0 or (self.expires_at is not None and now >= self.expires_at)

    def failure(self) -> P2PError | None:
        """Why the sender stops without a receiver: the last failed try, said plainly."""
        if self.admitted is not None:
            return None
        if self.failures:
            why = self.failures[-1][1]
            if isinstance(why, Verdict):
                return error_for(why, "the receiver")
            return CodeRefused(f"the receiver left before finishing the code exchange ({why}); "
                               "the code is spent: send again for a new code")
        return CodeRefused("nobody used the code before it expired: send again for a new code")
