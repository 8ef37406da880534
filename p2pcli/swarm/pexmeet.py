"""Peer exchange as one more rendezvous (`meet.Meeting`, prefix "px:"): the swarm's own
connected peers carry offers and answers (docs/PROTOCOL.md 3.5).

A thin adapter: `swarm/pex.py` decides whom to dial and relays what arrives (the core's
`Relay` action, which the node hands to the same handler as a server's signals); `send`
gives the core our offer, answer or busy to queue as a RELAY on the via-peer's link.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .core import SwarmCore
from .pex import PREFIX


class PexMeeting:
    """The peers we are connected to, as a rendezvous for the peers they know."""

    kind = "pex"
    url = "peer exchange"
    prefix = PREFIX
    addressed_offers = True

    def __init__(self, core: SwarmCore, drain: Callable[[], None]) -> None:
        self.core = core
        self.drain = drain
        "The node's `_drain`: carries out the Send the core queued."

    async def start(self) -> None:
        """Nothing to connect to: the links are the swarm's."""

    async def send(self, kind: str, peer: str, payload: dict) -> None:
        # Dropped quietly when the via is gone or over its budget: the dial times out.
        self.core.pex.send_signal(kind, peer, payload, time.monotonic())
        self.drain()

    async def close(self) -> None:
        """Nothing to say goodbye to."""
