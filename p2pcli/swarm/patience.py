"""How long a download has gone without help: what its `--timeout` is held to (sans-IO).

Help is something we asked for arriving: manifest bytes, or a block. A handshake is not
help, nor is a refusal ("busy"), nor a peer that connects and then hangs up or says
nothing: counting a handshake let a busy swarm, where other peers kept connecting, or one
peer that rejoined again and again, push a `--timeout 6` past 16 s, and for ever. So the
clock runs from the last help, and is held only while a peer that has helped us, and can
still help, stays connected (a seeder sending slowly is not idle; one that stalls is
dropped by the request timeout, and the clock runs again from its last block). One more
case holds it: a pipe download whose reader is paused asks for nothing, so any connected
peer that has what we lack holds it then (the caller decides: PieceExchange.holding).

The peers that met us and gave nothing are remembered (ids, a bounded number), so the
error at the timeout can say the content was found but nobody would give it; so are those
dropped for leaving our requests unanswered (a seeder that stalled), so that it can say
that rather than "all peers left". A peer still connected that has not answered yet is
only named in that error: an unanswered request holds nothing off.
"""

from __future__ import annotations

from collections.abc import Iterable

from .peer import Peer

MAX_REMEMBERED = 1000  # peer ids kept for the error message; more would say nothing new


class Patience:
    """When help last came, and who met us without giving any."""

    def __init__(self, now: float) -> None:
        self.last_help = now
        "When a peer last gave us something, or one that had was last seen connected."
        self.gave_nothing: set[str] = set()
        "Peers that handshook and left without giving anything (not those that lacked it)."
        self.stopped_answering: set[str] = set()
        "Peers dropped for leaving our requests for pieces unanswered (exchange.expire)."

    def restart(self, now: float) -> None:
        """The wait starts now (the rendezvous are up)."""
        self.last_help = now

    def helped(self, p: Peer, now: float) -> None:
        """`p` sent manifest bytes or a block."""
        p.helped = True
        self.last_help = now
        self.gave_nothing.discard(p.id)
        # Peers dropped before this help are not why a later wait ran out.
        self.stopped_answering.clear()

    def left(self, p: Peer) -> None:
        """`p` is forgotten: note it if it met us and gave nothing it could have, or if it
        was dropped for not answering our requests."""
        if p.unresponsive:
            _remember(self.stopped_answering, p.id)
        elif p.proto.remote is not None and not p.helped and not p.manifest.unavailable:
            _remember(self.gave_nothing, p.id)

    def watch(self, helping: bool, now: float) -> None:
        """Called each tick: `helping`, a peer that helped and can help is connected."""
        if helping:
            self.last_help = now

    def idle_for(self, helping: bool, now: float) -> float:
        """Seconds without help (0 while a helping peer is connected)."""
        return 0.0 if helping else now - self.last_help

    def unhelpful(self, connected: Iterable[Peer]) -> tuple[set[str], set[str]]:
        """Peers that met us and gave nothing they could have: (those gone, those still
        connected, which have not answered yet). A peer that told us it lacks the manifest
        is only another downloader: in neither."""
        now_here = {p.id for p in connected
                    if p.ready and not p.helped and not p.manifest.unavailable}
        return self.gave_nothing - now_here, now_here


def _remember(ids: set[str], peer: str) -> None:
    if len(ids) < MAX_REMEMBERED:
        ids.add(peer)
