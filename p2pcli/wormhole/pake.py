"""The code exchange: SPAKE2 over signaling, binding each side's DTLS fingerprint (issue 18).

Sans-IO. The adapter moves the `wormhole` objects below inside the signaling relays
(docs/PROTOCOL.md section 4 is the specification) and hands in each SDP's DTLS
fingerprint; this module decides whether the peer proved the code and whether the
fingerprints are the ones the partner sent. In short:

    1 receiver -> sender  {v, pake: X}                          offer, no SDP
    2 sender -> receiver  {v, pake: Y, key, offer: sealed}       answer, no SDP (spends a try)
    3 receiver -> sender  {v, key, fp}                           offer with the receiver's SDP
    4 sender -> receiver  {v, fp}                                answer with the sender's SDP
      either way          {v, error[, key]}                      a refusal or a notice

K = SPAKE2(code). `key` tags (HMAC-SHA256 with a per-direction key from HKDF over K) prove
the code; `fp` tags bind the fingerprints each side saw. The sender checks the receiver's
own fingerprint (3) before its swarm ever sees the offer, and the receiver checks both (4)
before its swarm sets the answer, so neither side's DTLS can complete with a third party.
What is shared (name, size, content hash) travels sealed with a key from K (AES-GCM from
`cryptography`, which aiortc already needs): the signaling server never sees it.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from spake2 import SPAKE2_A, SPAKE2_B
from spake2.spake2 import SPAKEError

from p2pcli.errors import ExitCode, P2PError
from p2pcli.wormhole.code import VERSION, Code

#: Protocol version carried in every message as `v`.
PROTOCOL = 1
#: SPAKE2 identities: the receiver is side A, the sender side B (fixed roles: no reflection).
ID_RECEIVER, ID_SENDER = b"p2p-receiver", b"p2p-sender"
#: Default tries per code, as magic-wormhole: a guesser gets one.
DEFAULT_TRIES = 1
#: Largest sealed offer accepted (a name, a size, a hash: far below).
MAX_SEALED = 8192


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
    """The other side refused: code used, closed after a failed try, expired, declined."""

    exit_code = ExitCode.NO_PEERS
    reason = ""
    "The refusal's word (REFUSALS), when it came from the other side."


class BadMessage(P2PError):
    """A `wormhole` object that is not what this step expects."""

    exit_code = ExitCode.TAMPERED


#: What a receiver says for each refusal the sender sends.
REFUSALS = {
    "used": "another receiver is using or has used this code; ask the sender for a new code",
    "closed": "the sender closed this code after a wrong try; ask the sender for a new code",
    "expired": "this code expired; ask the sender for a new code",
    "busy": "the peer serving this code is busy with another receiver; try again in a moment",
    "not-serving": "nobody is sending with this code any more (only receivers are in its "
                   "room); ask the sender for a new code",
}
#: Refusals that say only "not this peer": a receiver asks the room's next peer, if any.
#: "closed" too: a serving receiver whose tries are spent closed the code *there*; another
#: peer (the sender, another seeder) may still serve it.
PASS_ON = frozenset({"used", "busy", "closed", "not-serving"})
#: Which refusal a receiver reports when every peer refused: the most useful to act on.
PASS_ON_RANK = {"not-serving": 0, "closed": 1, "used": 2, "busy": 2}


def error_for(verdict: Verdict, who: str) -> P2PError | None:
    """The error a side reports for a failed verdict (None for OK), with what to do."""
    if verdict is Verdict.WRONG_CODE:
        return WrongCode(f"wrong code: {who} used another code (mistyped, or someone "
                         "guessing); nothing was sent; ask for a new code")
    if verdict is Verdict.TAMPERED:
        return Tampered("the connection was tampered with: the code matched but the DTLS "
                        "fingerprints the rendezvous relayed did not (a man in the middle: "
                        "the server or the path to it); nothing was sent; use another "
                        "server (https or wss)")
    return None


def sdp_fingerprint(sdp: object) -> str:
    """The DTLS fingerprints an SDP declares, canonical (algorithm lower case, hex upper case,
    sorted, joined with ','): what the tags bind. '' when there is none. Takes the SDP
    text or a {type, sdp} object."""
    if isinstance(sdp, dict):
        sdp = sdp.get("sdp")
    if not isinstance(sdp, str):
        return ""
    fps = set()
    for line in sdp.splitlines():
        if line.startswith("a=fingerprint:"):
            alg, _, value = line.split(":", 1)[1].strip().partition(" ")
            fps.add(f"{alg.lower()} {value.strip().upper()}")
    return ",".join(sorted(fps))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: object, what: str, limit: int = 256) -> bytes:
    if not isinstance(text, str) or len(text) > limit:
        raise BadMessage(f"bad code exchange message: {what} is missing or not base64")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except ValueError:
        raise BadMessage(f"bad code exchange message: {what} is not base64") from None


def _hkdf(key: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869), salt empty (32 zero bytes), one 32-byte block."""
    prk = hmac.new(b"\0" * 32, key, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def _frame(*parts: bytes) -> bytes:
    """Length-prefixed concatenation: no two part lists frame to the same bytes."""
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def _mac(key: bytes, label: bytes, data: bytes) -> str:
    return _b64(hmac.new(key, label + data, hashlib.sha256).digest())


def _same(got: object, want: str, what: str) -> bool:
    return hmac.compare_digest(_unb64(got, what), _unb64(want, what))


def _exchange_id(y: bytes) -> str:
    """The name of one exchange: the first 8 bytes of SHA-256 of the sender's SPAKE2
    message (message 2's `pake`). A receiver addresses message 3 and its notices to it
    (`to`): over a tracker or PeerJS they reach every peer in the room, and only the
    peer whose answer the receiver took may act on them. Routing, not authentication:
    Y is public to whoever relays it."""
    return _b64(hashlib.sha256(y).digest()[:8])


def _check_version(message: object) -> dict:
    if not isinstance(message, dict):
        raise BadMessage("bad code exchange message: not an object")
    if message.get("v") != PROTOCOL:
        raise BadMessage(f"the peer speaks code exchange version {message.get('v')!r}, "
                         f"this p2p speaks {PROTOCOL}: update both to the same release")
    return message


@dataclass
class _Session:
    """One exchange's key material, the same on both sides when the code matches."""

    key: bytes
    transcript: bytes  # frame(VERSION, room, X, Y)

    @classmethod
    def of(cls, key: bytes, room: str, x: bytes, y: bytes) -> _Session:
        return cls(key, _frame(VERSION, room.encode(), x, y))

    def _k(self, what: bytes) -> bytes:
        return _hkdf(self.key, VERSION + b" " + what)

    def key_tag(self, side: bytes) -> str:
        return _mac(self._k(b"confirm " + side), b"key", self.transcript)

    def fp_tag(self, side: bytes, *fingerprints: str) -> str:
        return _mac(self._k(b"confirm " + side), b"fp",
                    _frame(self.transcript, *(f.encode() for f in fingerprints)))

    def seal(self, offer: dict) -> str:
        data = json.dumps(offer, separators=(",", ":"), sort_keys=True).encode()
        # One key per exchange, one message under it: a fixed nonce is safe.
        return _b64(AESGCM(self._k(b"offer")).encrypt(b"\0" * 12, data, self.transcript))

    def unseal(self, sealed: object) -> dict:
        blob = _unb64(sealed, "offer", MAX_SEALED)
        try:
            data = AESGCM(self._k(b"offer")).decrypt(b"\0" * 12, blob, self.transcript)
            offer = json.loads(data)
        except (InvalidTag, ValueError):
            raise BadMessage("bad code exchange message: the sealed offer does not open") from None
        if not isinstance(offer, dict):
            raise BadMessage("bad code exchange message: the sealed offer is not an object")
        return offer


def _spake_finish(spake: SPAKE2_A | SPAKE2_B, message: dict) -> tuple[bytes, bytes]:
    other = _unb64(message.get("pake"), "pake")
    try:
        return other, spake.finish(other)
    except SPAKEError:
        raise BadMessage("bad code exchange message: not a SPAKE2 message") from None


class Receiver:
    """The receiving side of one exchange with one sender:
    `start()` -> 1; `on_hello(2)` -> the offer; `offer_tags(fp)` -> 3 (or `decline()`);
    `on_answer(4, fp)` -> verdict."""

    def __init__(self, code: Code) -> None:
        self.code = code
        self._spake = SPAKE2_A(code.password(), idA=ID_RECEIVER, idB=ID_SENDER)
        self._x = self._spake.start()
        # SPAKE2 finishes once; over a tracker several peers answer the same X, and the
        # ones we do not take are released with a proof (`release`) from a copy.
        self._saved = self._spake.serialize()
        self._guessed = False
        "A late message 2 failed its key tag: no more releases (see `release`)."
        self._session: _Session | None = None
        self._to = ""
        "The exchange we took (_exchange_id): where message 3 and our notices go."
        self._fingerprint = ""
        self.verdict: Verdict | None = None
        "After message 2: the key tag's verdict; after 4: the fingerprints'."

    def start(self) -> dict:
        """Message 1."""
        return {"v": PROTOCOL, "pake": _b64(self._x)}

    def on_hello(self, message: object) -> dict:
        """Message 2: the sender's offer (name, size, content hash...), once the sender
        proved the code. Raises CodeRefused for a refusal, WrongCode when its key tag fails
        (then send `decline("wrong-code")`, so the sender learns it too)."""
        message = _check_version(message)
        if "error" in message:
            reason = str(message["error"])
            refused = CodeRefused(REFUSALS.get(reason, f"the sender refused: {reason}"))
            refused.reason = reason  # PASS_ON: the adapter may ask another peer
            raise refused
        if self._session is not None:
            raise BadMessage("bad code exchange message: a second answer")
        y, key = _spake_finish(self._spake, message)
        self._session = _Session.of(key, self.code.room(), self._x, y)
        self._to = _exchange_id(y)
        if not _same(message.get("key"), self._session.key_tag(ID_SENDER), "key"):
            self.verdict = Verdict.WRONG_CODE
            raise error_for(Verdict.WRONG_CODE, "the sender")
        self.verdict = Verdict.OK
        return self._session.unseal(message.get("offer"))

    def release(self, message: object) -> dict | None:
        """Another serving peer's message 2 after we took one (a tracker or PeerJS room
        asks every peer at once): the notice `elsewhere` addressed to its exchange, with
        our key tag for it, so that peer knows its answer was not a guess and takes its
        try back (a seed-after receiver with --tries 1 would otherwise close the code).
        None when it is no message 2 or its key tag fails (then it is no serving peer of
        our code: nothing to give back).

        Whether a notice comes back tells the peer whether its message 2 used our code: an
        online guess against this receiver. So after the first one that fails we release
        nobody any more: one guess per receiver run, as the hello itself gives (a wrong
        first answer ends the receiver)."""
        message = _check_version(message)
        if "error" in message or self._guessed:
            return None
        y, key = _spake_finish(SPAKE2_A.from_serialized(self._saved), message)
        session = _Session.of(key, self.code.room(), self._x, y)
        if not _same(message.get("key"), session.key_tag(ID_SENDER), "key"):
            self._guessed = True
            return None
        return {"v": PROTOCOL, "error": "elsewhere", "key": session.key_tag(ID_RECEIVER),
                "to": _exchange_id(y)}

    def _ready(self) -> _Session:
        if self._session is None:
            raise RuntimeError("no message 2 yet")
        return self._session

    def offer_tags(self, fingerprint: str) -> dict:
        """Message 3's `wormhole`, for an offer whose SDP declares `fingerprint`."""
        s = self._ready()
        if self.verdict is not Verdict.OK:
            raise RuntimeError("the sender did not prove the code")
        self._fingerprint = fingerprint
        return {"v": PROTOCOL, "to": self._to, "key": s.key_tag(ID_RECEIVER),
                "fp": s.fp_tag(ID_RECEIVER, fingerprint)}

    def decline(self, reason: str) -> dict:
        """A notice instead of message 3 ("declined", "wrong-code", "tampered"), with our
        key tag so the sender judges a wrong code itself."""
        notice = {"v": PROTOCOL, "error": reason}
        if self._session is not None:
            notice["key"] = self._session.key_tag(ID_RECEIVER)
            notice["to"] = self._to
        return notice

    def on_answer(self, message: object, sender_fingerprint: str) -> Verdict:
        """Message 4: whether the sender's SDP carries the fingerprint the sender bound.
        Raises for a refusal of message 3 (CodeRefused, WrongCode, Tampered)."""
        message = _check_version(message)
        s = self._ready()
        if "error" in message:
            err = str(message["error"])
            if err == "tampered":
                raise error_for(Verdict.TAMPERED, "")
            if err == "wrong-code":
                raise error_for(Verdict.WRONG_CODE, "the sender")
            raise CodeRefused(REFUSALS.get(err, f"the sender refused: {err}"))
        ok = bool(sender_fingerprint) and bool(self._fingerprint) and _same(
            message.get("fp"), s.fp_tag(ID_SENDER, self._fingerprint, sender_fingerprint), "fp")
        self.verdict = Verdict.OK if ok else Verdict.TAMPERED
        return self.verdict


@dataclass
class _Attempt:
    session: _Session
    started: float
    to: str  # _exchange_id of our message 2: what the receiver's later messages name
    fingerprint: str = ""  # the receiver's, once its offer passed


@dataclass
class Sender:
    """The sending side: answers receivers while tries remain and admits the first peer
    that proves the code; only that peer's offer reaches the swarm. Time is passed in."""

    code: Code
    offer: dict
    """What the receiver is shown before it accepts (name, size, content hash, ...)."""
    tries: int = DEFAULT_TRIES
    expires_at: float | None = None
    """After this time no new receiver is answered ("expired"); None: never."""
    confirm_timeout: float = 300.0
    """An answered receiver that neither offers nor declines within this has spent its try
    (long enough for a person to read the prompt)."""

    def __post_init__(self) -> None:
        if self.tries < 1:
            raise ValueError("tries must be at least 1")
        self.tries_left = self.tries
        self.admitted: str | None = None
        self.failures: list[tuple[str, Verdict | str]] = []
        self._attempts: dict[str, _Attempt] = {}

    def on_hello(self, peer: str, message: object, now: float) -> dict:
        """Message 1 from `peer`: message 2 (spends a try: its tag lets the peer test one
        guess offline) or a refusal (spends nothing)."""
        message = _check_version(message)
        if self.admitted is not None:
            return {"v": PROTOCOL, "error": "used"}
        if self.expires_at is not None and now >= self.expires_at:
            return {"v": PROTOCOL, "error": "expired"}
        if peer in self._attempts:
            raise BadMessage("bad code exchange message: a second hello from one peer")
        if self.tries_left <= 0:
            # Racing receivers: the one in flight may still succeed; say it is taken.
            return {"v": PROTOCOL, "error": "used" if self._attempts else "closed"}
        spake = SPAKE2_B(self.code.password(), idA=ID_RECEIVER, idB=ID_SENDER)
        y = spake.start()
        x, key = _spake_finish(spake, message)
        self.tries_left -= 1
        session = _Session.of(key, self.code.room(), x, y)
        self._attempts[peer] = _Attempt(session, now, _exchange_id(y))
        return {"v": PROTOCOL, "pake": _b64(y), "key": session.key_tag(ID_SENDER),
                "offer": session.seal(self.offer)}

    def addressed_elsewhere(self, peer: str, message: object) -> bool:
        """Whether a message 3 or notice from `peer` names another exchange than ours
        (`to`): over a tracker or PeerJS a receiver's messages reach every peer in the
        room, and one that took another peer's answer is no failure here. Such a message
        is ignored: no verdict, no failure; our attempt with that peer stays in flight and
        times out as an abandoned one (`on_timer`: "timeout", its try stays spent, since
        our message 2 let the peer test one guess offline; never a wrong code). A message
        without `to` (a receiver of an older release) is taken as ours, as before."""
        to = message.get("to") if isinstance(message, dict) else None
        if to is None:
            return False
        attempt = self._attempts.get(peer)
        return attempt is None or not isinstance(to, str) or not hmac.compare_digest(
            to.encode(), attempt.to.encode())

    def on_offer(self, peer: str, message: object, receiver_fingerprint: str
                 ) -> tuple[Verdict | None, dict | None]:
        """Message 3 with the receiver's SDP: OK admits `peer` (pass its offer to the
        swarm); otherwise the refusal to send back. (None, None): addressed to another
        peer's exchange (`addressed_elsewhere`), ignore it."""
        message = _check_version(message)
        if self.addressed_elsewhere(peer, message):
            return None, None
        attempt = self._attempts.get(peer)
        if attempt is None or attempt.fingerprint:
            raise BadMessage("bad code exchange message: an offer without a hello")
        s = attempt.session
        if not _same(message.get("key"), s.key_tag(ID_RECEIVER), "key"):
            verdict = Verdict.WRONG_CODE
        elif not receiver_fingerprint or not _same(
                message.get("fp"), s.fp_tag(ID_RECEIVER, receiver_fingerprint), "fp"):
            verdict = Verdict.TAMPERED
        else:
            verdict = Verdict.OK
        if verdict is not Verdict.OK or self.admitted is not None:
            del self._attempts[peer]
            self.failures.append((peer, verdict))
            return verdict, {"v": PROTOCOL, "error": verdict.value
                             if verdict is not Verdict.OK else "used"}
        attempt.fingerprint = receiver_fingerprint
        self.admitted = peer
        return verdict, None

    def answer_tags(self, peer: str, sender_fingerprint: str) -> dict:
        """Message 4's `wormhole` for the admitted peer's answer."""
        attempt = self._attempts.get(peer)
        if peer != self.admitted or attempt is None:
            raise RuntimeError(f"{peer} was not admitted")
        return {"v": PROTOCOL, "fp": attempt.session.fp_tag(
            ID_SENDER, attempt.fingerprint, sender_fingerprint)}

    def on_notice(self, peer: str, message: object) -> Verdict | str | None:
        """A receiver's notice instead of message 3 ("declined", "wrong-code") or after 4
        ("tampered"): what to report. A wrong code is judged from its key tag, never
        taken on its word. None: addressed to another peer's exchange, ignored."""
        message = _check_version(message)
        if self.addressed_elsewhere(peer, message):
            return None
        attempt = self._attempts.pop(peer, None)
        if attempt is None:
            raise BadMessage("bad code exchange message: a notice without a hello")
        reason: Verdict | str = str(message.get("error", "declined"))
        if "key" in message and not _same(message["key"],
                                          attempt.session.key_tag(ID_RECEIVER), "key"):
            reason = Verdict.WRONG_CODE
        elif reason == "tampered":
            reason = Verdict.TAMPERED
        if peer == self.admitted:
            self.admitted = None
            self.tries_left = 0  # a tampered connection: the code is burnt
        self.failures.append((peer, reason))
        return reason

    def on_peer_gone(self, peer: str) -> None:
        """The peer left before it was admitted: its try stays spent."""
        if peer != self.admitted and self._attempts.pop(peer, None) is not None:
            self.failures.append((peer, "gone"))

    def timer(self) -> float | None:
        """When `on_timer` next has something to do."""
        times = [a.started + self.confirm_timeout for p, a in self._attempts.items()
                 if p != self.admitted]
        if self.expires_at is not None and self.admitted is None:
            times.append(self.expires_at)
        return min(times, default=None)

    def on_timer(self, now: float) -> None:
        for peer, a in list(self._attempts.items()):
            if peer != self.admitted and now >= a.started + self.confirm_timeout:
                del self._attempts[peer]
                self.failures.append((peer, "timeout"))

    def is_admitted(self, peer: str) -> bool:
        """Whether `peer` proved the code: the only peer the swarm hears of."""
        return peer == self.admitted

    def finished(self, now: float) -> bool:
        """No receiver can be admitted any more: one was, or no tries / time are left and
        none is in flight. The adapter then stops, once the admitted peer is served."""
        if self.admitted is not None:
            return True
        if self._attempts:
            return False
        return self.tries_left <= 0 or (self.expires_at is not None and now >= self.expires_at)

    def stopped(self, now: float) -> bool:
        """The adapter stops: nobody can be admitted any more, and nobody was."""
        return self.finished(now) and self.admitted is None

    def failure(self) -> P2PError | None:
        """Why the sender stops without a receiver, said plainly."""
        if self.admitted is not None:
            return None
        if self.failures:
            why = self.failures[-1][1]
            if isinstance(why, Verdict):
                return error_for(why, "the receiver")
            if why == "declined":
                return CodeRefused("the receiver declined the share")
            if why == "elsewhere":
                return CodeRefused("the receiver took another peer's answer; the code is "
                                   "spent: send again for a new code")
            return CodeRefused(f"the receiver left before finishing the code exchange ({why}); "
                               "the code is spent: send again for a new code")
        return CodeRefused("nobody used the code before it expired: send again for a new code")


class Seeder(Sender):
    """A `receive --seed-after` receiver serving the content on under the code it
    received with: like `Sender`, but it admits every peer that proves the code, one
    exchange at a time, and never stops because one was admitted.

    Its budget is still `tries` wrong guesses: a try is spent at message 2 (the peer can
    test one guess against its key tag) and given back once that peer proves the code
    (message 3's key tag, or a notice carrying it), since knowing the code is not a guess.
    So each serving peer adds exactly `tries` online guesses to an attacker's total."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.served: set[str] = set()
        "Peers that proved the code and whose connection the swarm may open."

    def on_hello(self, peer: str, message: object, now: float) -> dict:
        _check_version(message)
        if self.tries_left <= 0 and (self.expires_at is None or now < self.expires_at):
            # An exchange in flight holds the try (given back if that peer proves the
            # code): "busy", which sends the receiver on to another peer or to retry.
            in_flight = self._attempts.keys() - self.served
            return {"v": PROTOCOL, "error": "busy" if in_flight else "closed"}
        self.admitted = None  # Sender's one-receiver rule does not apply
        return super().on_hello(peer, message, now)

    def on_offer(self, peer: str, message: object, receiver_fingerprint: str
                 ) -> tuple[Verdict | None, dict | None]:
        if self.addressed_elsewhere(peer, _check_version(message)):
            return None, None
        self.admitted = None
        verdict, refusal = super().on_offer(peer, message, receiver_fingerprint)
        if verdict is Verdict.OK:
            self.served.add(peer)
            self.tries_left = min(self.tries, self.tries_left + 1)  # a proof, not a guess
        self.admitted = None
        return verdict, refusal

    def answer_tags(self, peer: str, sender_fingerprint: str) -> dict:
        attempt = self._attempts.get(peer)
        if peer not in self.served or attempt is None:
            raise RuntimeError(f"{peer} was not admitted")
        return {"v": PROTOCOL, "fp": attempt.session.fp_tag(
            ID_SENDER, attempt.fingerprint, sender_fingerprint)}

    def on_notice(self, peer: str, message: object) -> Verdict | str | None:
        message = _check_version(message)
        if self.addressed_elsewhere(peer, message):
            return None
        attempt = self._attempts.get(peer)
        proved = attempt is not None and "key" in message and _same(
            message["key"], attempt.session.key_tag(ID_RECEIVER), "key")
        was_served = peer in self.served
        self.served.discard(peer)
        reason = super().on_notice(peer, message)
        if reason is Verdict.TAMPERED or (was_served and reason == "tampered"):
            self.tries_left = 0  # a man in the middle knows this room: the code is burnt
        elif proved and not was_served:
            self.tries_left = min(self.tries, self.tries_left + 1)  # declined, not guessed
        return reason

    def on_peer_gone(self, peer: str) -> None:
        if peer in self.served:
            self.served.discard(peer)
            self._attempts.pop(peer, None)
            return
        super().on_peer_gone(peer)

    def on_timer(self, now: float) -> None:
        for peer, a in list(self._attempts.items()):
            if peer not in self.served and now >= a.started + self.confirm_timeout:
                del self._attempts[peer]
                self.failures.append((peer, "timeout"))

    def is_admitted(self, peer: str) -> bool:
        return peer in self.served

    def finished(self, now: float) -> bool:
        """No peer can prove the code any more (wrong guesses spent the tries, or it
        expired) and no exchange is in flight. Peers being served are not cut: the
        adapter stops once they are gone too (`stopped`)."""
        if self._attempts.keys() - self.served:
            return False
        return self.tries_left <= 0 or (self.expires_at is not None and now >= self.expires_at)

    def stopped(self, now: float) -> bool:
        return self.finished(now) and not self.served

    def failure(self) -> P2PError | None:
        why = self.failures[-1][1] if self.failures else None
        if why is Verdict.WRONG_CODE:
            return WrongCode("wrong code: a peer tried another code (mistyped, or someone "
                             "guessing) and no try is left (--tries): the code is closed "
                             "here; stopped serving it")
        if isinstance(why, Verdict):
            return error_for(why, "a peer")
        return CodeRefused("the code is closed here (no try left, --tries); stopped serving it")
