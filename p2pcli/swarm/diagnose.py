"""Why a download found nobody usable: the one-line error that tells the user what to do."""

from __future__ import annotations

from ..errors import NoPeers, P2PError, Unverifiable
from .core import SwarmCore


def no_peers_error(core: SwarmCore, timeout: float, turn_urls: list[str]) -> P2PError:
    """The error for a download that found nobody usable within `timeout` seconds.
    `turn_urls`: the TURN relays this process was given."""
    cid = core.content_hash.hex()[:16]
    if core.rejections:
        return Unverifiable(
            "every peer sent data that failed verification; the link may be wrong, "
            "or ask the sender to seed again"
        )
    unopened = core.admission.unopened()
    busy = set(core.admission.busy_peers)
    away = core.patience.unhelpful(core.peers.values()) - busy
    if core.manifest is None and (busy or away) and not unopened:
        # They answered: the network is fine, they would not (or could not) serve us.
        return NoPeers(
            f"found {_peers(len(busy | away))} with {cid}... reachable, but none served us "
            f"for {timeout:g}s: " + _turned_away(busy, away)
            + "; try again later or with a longer --timeout"
            + (", or ask the sender to raise --max-peers" if busy else "")
        )
    if core.manifest is None and unopened:
        return NoPeers(
            f"found {_peers(unopened)} with {cid}... but no connection "
            f"opened within {timeout:g}s: they cannot be reached directly from this network"
            + (f", and not through the TURN relay {turn_urls[0]} either" if turn_urls else
               ", and no working TURN relay was given (the signaling server handed out "
               "none, or none answered)")
            + "; run 'p2p doctor' to check the relay"
        )
    if core.manifest is None:
        return NoPeers(
            f"no peer has {cid}... (waited {timeout:g}s); check the hash/link "
            "and that a seeder is running on the same signaling server"
        )
    usable = len(core.usable_peers())
    stalled = sum(core.pieces.can_help(p) for p in core.usable_peers())
    if stalled or (busy and not usable):
        return NoPeers(
            (f"{_peers(stalled)} with missing pieces stayed connected but sent none"
             if stalled else f"{_peers(len(busy))} with {cid}... had no free connection slot")
            + f" for {timeout:g}s; the partial download is kept, run the same command again "
            "later to resume (or with a longer --timeout)"
        )
    if usable:
        return NoPeers(
            ("the connected peer lacks" if usable == 1 else f"the {usable} connected peers lack")
            + " every missing piece, and no "
            f"peer that has them came within {timeout:g}s; the partial download is kept, run "
            "the same command again to resume (or when a seeder is back)"
        )
    return NoPeers(
        f"all peers left and none came back within {timeout:g}s; the partial download is kept, "
        "run the same command again to resume"
    )


def _peers(n: int) -> str:
    return f"{n} peer" if n == 1 else f"{n} peers"


def _turned_away(busy: set[str], away: set[str]) -> str:
    """What the peers that answered did instead of serving us."""
    def who(n: int) -> str:  # "it"/"they" when one kind of answer, else how many
        return ("it" if n == 1 else "they") if not (busy and away) else str(n)
    why = []
    if busy:
        why.append(f"{who(len(busy))} had no free connection slot (each serves at most "
                   "--max-peers peers, and a few per address)")
    if away:
        why.append(f"{who(len(away))} connected, then hung up or gave nothing")
    return ", ".join(why)
