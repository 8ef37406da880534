"""swarm/meet.py: routing by peer-id prefix, and starting every rendezvous at once (a slow
or dead one costs nothing while another works)."""

from __future__ import annotations

import asyncio

import pytest

from p2pcli import events as ev
from p2pcli.errors import P2PError, SignalUnreachable
from p2pcli.swarm.meet import meeting_for, start_all


class Fake:
    addressed_offers = True

    def __init__(self, kind: str, prefix: str, *, delay: float = 0.0,
                 error: P2PError | None = None) -> None:
        self.kind, self.url, self.prefix = kind, f"{kind}://{prefix}", prefix
        self.delay, self.error = delay, error
        self.started = asyncio.Event()

    async def start(self) -> None:
        await asyncio.sleep(self.delay)
        if self.error:
            raise self.error
        self.started.set()

    async def send(self, kind: str, peer: str, payload: dict) -> None: ...

    async def close(self) -> None: ...


def test_a_peer_is_routed_to_the_meeting_with_the_longest_matching_prefix():
    sig, t0, t1 = Fake("signal", ""), Fake("tracker", "wt0:"), Fake("tracker", "wt1:")
    ms = [sig, t0, t1]
    assert meeting_for(ms, "wt1:abcd") is t1
    assert meeting_for(ms, "wt0:abcd") is t0
    assert meeting_for(ms, "Zx_socketio_sid") is sig
    assert meeting_for([t0], "Zx_socketio_sid") is None


def test_start_returns_with_the_first_up_and_the_slow_one_joins_later():
    async def main() -> None:
        got: list = []
        fast, slow = Fake("signal", ""), Fake("tracker", "wt0:", delay=0.3)
        live = await start_all([slow, fast], got.append)
        assert live == [fast] and not slow.started.is_set()
        await asyncio.wait_for(slow.started.wait(), 5)
        await asyncio.sleep(0)
        assert live == [fast, slow]
        assert got == [ev.Announced(via="tracker", url="tracker://wt0:")]

    asyncio.run(main())


def test_a_failing_rendezvous_is_a_warning_while_another_works():
    async def main() -> None:
        got: list = []
        bad = Fake("tracker", "wt0:", error=SignalUnreachable("tracker down"))
        good = Fake("signal", "", delay=0.05)
        live = await start_all([bad, good], got.append)
        assert live == [good]
        assert ev.Warning(message="tracker tracker://wt0:: tracker down") in got

    asyncio.run(main())


def test_when_every_rendezvous_fails_the_first_failure_is_raised():
    async def main() -> None:
        a = Fake("tracker", "wt0:", error=SignalUnreachable("first"))
        b = Fake("tracker", "wt1:", delay=0.05, error=SignalUnreachable("second"))
        with pytest.raises(SignalUnreachable, match="first"):
            await start_all([a, b], lambda e: None)

    asyncio.run(main())


def test_a_peer_reported_while_its_meeting_starts_is_offered_to_through_it(monkeypatch):
    """A PeerJS hello held for our slot, or an offer a tracker forwards, can arrive before
    the meeting's start() returns: the swarm must already route through that meeting (it
    once routed by the list start_all() returned, and forgot such a peer)."""
    from p2pcli.swarm import Swarm, SwarmConfig, node

    sent: list[tuple[str, str]] = []

    class Early(Fake):
        def __init__(self, h) -> None:
            super().__init__("peerjs", "pj0:")
            self.h = h

        async def start(self) -> None:
            await self.h.peer_list(["pj0:3.abc"])  # before start() returns

        async def send(self, kind: str, peer: str, payload: dict) -> None:
            sent.append((kind, peer))

    monkeypatch.setattr(node, "build_meetings", lambda config, c, p, h, stats: [Early(h)])

    async def main() -> None:
        async def never(m):
            raise AssertionError("no manifest in this test")

        swarm = Swarm(bytes(32), SwarmConfig(signal_urls=[]), lambda e: None, open_store=never)
        try:
            await swarm.start()
            for _ in range(200):  # the offer is made off the event loop's current turn
                if sent:
                    break
                await asyncio.sleep(0.01)
            assert sent == [("offer", "pj0:3.abc")]
        finally:
            await swarm.close()

    asyncio.run(main())
