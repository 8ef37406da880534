"""Why a download found nobody usable: the one-line error that tells the user what to do."""

from __future__ import annotations

from ..errors import NoPeers, P2PError, Unverifiable
from .core import SwarmCore


def no_peers_error(core: SwarmCore, timeout: float, turn_urls: list[str], *,
                   pipe: bool = False) -> P2PError:
    """The error for a download that found nobody usable within `timeout` seconds.
    `turn_urls`: the TURN relays this process was given. `pipe`: the download goes to
    stdout, where nothing is kept to resume from."""
    cid = core.content_hash.hex()[:16]
    if core.rejections:
        return Unverifiable(
            "every peer sent data that failed verification; the link may be wrong, "
            "or ask the sender to seed again"
        )
    unopened = core.admission.unopened()
    busy = set(core.admission.busy_peers)
    gone, here = core.patience.unhelpful(core.peers.values())
    away, waiting = gone - busy, here - busy
    if core.manifest is None and (busy or away or waiting) and not unopened:
        # They answered: the network is fine, they would not (or could not) serve us.
        return NoPeers(
            f"found {_peers(len(busy | away | waiting))} with {cid}... reachable, but none "
            f"served us for {timeout:g}s: " + _turned_away(busy, away, waiting)
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
    kept = not pipe and core.picker is not None and core.picker.n_have > 0
    usable = len(core.usable_peers())
    stalled = sum(core.pieces.can_help(p) for p in core.usable_peers())
    if stalled or (busy and not usable):
        return NoPeers(
            (f"{_peers(stalled)} with missing pieces stayed connected but sent none"
             if stalled else f"{_peers(len(busy))} with {cid}... had no free connection slot")
            + f" for {timeout:g}s; " + _again(kept, pipe, "later ", " (or with a longer --timeout)")
        )
    if usable:
        return NoPeers(
            ("the connected peer lacks" if usable == 1 else f"the {usable} connected peers lack")
            + " every missing piece, and no "
            f"peer that has them came within {timeout:g}s; "
            + _again(kept, pipe, "", " (or when a seeder is back)")
        )
    mute = len(core.patience.stopped_answering)
    if mute:
        return NoPeers(
            f"{_peers(mute)} with the missing pieces stopped answering our requests and "
            f"{'was' if mute == 1 else 'were'} dropped, and no other peer came within "
            f"{timeout:g}s; " + _again(kept, pipe, "later ", "")
        )
    return NoPeers(
        f"all peers left and none came back within {timeout:g}s; " + _again(kept, pipe, "", "")
    )


def _again(kept: bool, pipe: bool, when: str, alternative: str) -> str:
    """What running the command again does: resume when a partial download is `kept`;
    to a pipe, start over (nothing of it is kept). `when`: "later " or ""."""
    if kept:
        return f"the partial download is kept, run the same command again {when}to resume" \
            + alternative
    if pipe:
        return (f"nothing is kept of a download to stdout, run the same command again {when}"
                "to start over" + alternative)
    return f"run the same command again {when}to retry" + alternative


def _peers(n: int) -> str:
    return f"{n} peer" if n == 1 else f"{n} peers"


def _turned_away(busy: set[str], away: set[str], waiting: set[str]) -> str:
    """What the peers that answered did instead of serving us."""
    def who(n: int) -> str:  # "it"/"they" when one kind of answer, else how many
        kinds = bool(busy) + bool(away) + bool(waiting)
        return ("it" if n == 1 else "they") if kinds == 1 else str(n)
    why = []
    if busy:
        why.append(f"{who(len(busy))} had no free connection slot (each serves at most "
                   "--max-peers peers, and a few per address)")
    if away:
        why.append(f"{who(len(away))} connected, then hung up or gave nothing")
    if waiting:
        why.append(f"{who(len(waiting))} connected and "
                   f"{'has' if len(waiting) == 1 else 'have'} not sent the manifest yet")
    return ", ".join(why)
