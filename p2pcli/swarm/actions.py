"""What the swarm core asks its adapter to do (`SwarmCore.next_action()`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..events import Event
from ..manifest import Manifest
from .peer import Peer


@dataclass(frozen=True, slots=True)
class Send:
    """Queue `data` on the peer's channel now (no back-pressure: control messages)."""

    peer: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The core forgot this peer: close its link and stop its tasks."""

    peer: str
    linger: bool = False
    "A CLOSE was just queued: let it reach the peer before the link goes."


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a connection to this peer: make an offer and send it over signaling."""

    peer: str


@dataclass(frozen=True, slots=True)
class SignalBusy:
    """Answer this peer's offer with "busy" (no SDP): it may try again later."""

    peer: str
    reason: str


@dataclass(frozen=True, slots=True)
class Upload:
    """The peer has queued requests: serve them (`SwarmCore.next_upload`)."""

    peer: str


@dataclass(frozen=True, slots=True)
class AnswerManifest:
    """Send the answer to the peer's manifest request (`SwarmCore.manifest_answer`)."""

    peer: str


@dataclass(frozen=True, slots=True)
class Verify:
    """Check a complete piece against the manifest and, if good, store it; then call
    `SwarmCore.piece_checked`."""

    piece: int
    data: bytearray


@dataclass(frozen=True, slots=True)
class OpenStore:
    """A verified manifest arrived: open the store and picker, then call
    `SwarmCore.store_opened`."""

    manifest: Manifest


@dataclass(frozen=True, slots=True)
class Relay:
    """A connected peer relayed a signal to us (peer exchange): handle it as an offer or
    answer from a rendezvous (`meet.MeetHandlers.signal`), from `peer` (a "px:" id)."""

    kind: str
    "offer or answer."
    peer: str
    data: dict
    '{"offer" | "answer": {"type", "sdp"}} or {"busy": reason}.'


@dataclass(frozen=True, slots=True)
class Emit:
    """Report an event."""

    event: Event


Action = (Send | Close | Connect | SignalBusy | Upload | AnswerManifest | Verify | OpenStore
          | Relay | Emit)


class Outbox:
    """The actions the core has decided on, in order, until the adapter takes them."""

    def __init__(self) -> None:
        self.queue: deque[Action] = deque()

    def push(self, action: Action) -> None:
        self.queue.append(action)

    def send(self, peer: Peer, data: bytes | None) -> None:
        """Queue `data` for a peer whose channel is open (nothing otherwise)."""
        if data is not None and peer.opened_at is not None and not peer.closed:
            self.queue.append(Send(peer.id, data))

    def emit(self, event: Event) -> None:
        self.queue.append(Emit(event))
