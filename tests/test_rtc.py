"""PeerLink: a peer that leaves mid-negotiation closes the link; it is never a crash."""

from __future__ import annotations

import pytest

from p2pcli import patches
from p2pcli.rtc import LinkClosed, PeerLink


@pytest.fixture(autouse=True)
def loopback():
    patches.apply(host_addresses=["127.0.0.1"])
    yield
    patches.revert()


@pytest.mark.timeout(60)
async def test_answering_an_offer_on_a_closed_link_is_link_closed_not_a_bug():
    offerer, answerer = PeerLink.create([]), PeerLink.create([])
    offer = await offerer.make_offer()
    await answerer.close()  # the peer left (peer-left) while its offer was in flight
    with pytest.raises(LinkClosed):
        await answerer.answer_offer(offer)
    await offerer.close()


@pytest.mark.timeout(60)
async def test_offering_and_accepting_on_a_closed_link_is_link_closed():
    a, b = PeerLink.create([]), PeerLink.create([])
    await a.close()
    with pytest.raises(LinkClosed):
        await a.make_offer()
    c = PeerLink.create([])
    offer = await c.make_offer()
    answer = await b.answer_offer(offer)
    await c.close()
    with pytest.raises(LinkClosed):
        await c.accept_answer(answer)
    await b.close()


@pytest.mark.timeout(60)
async def test_a_stale_or_duplicate_answer_is_ignored_not_a_crash():
    # Found by a 16-fetcher benchmark: a redialled peer's answer to the offer of the link
    # we replaced came while the new link's offer was still being made ("stable"), and
    # aiortc's InvalidStateError ended the fetch as an internal error.
    a, b = PeerLink.create([]), PeerLink.create([])
    answer = await b.answer_offer(await a.make_offer())
    fresh = PeerLink.create([])
    await fresh.accept_answer(answer)  # no offer of its own yet
    assert fresh.pc.signalingState == "stable"
    await a.accept_answer(answer)
    await a.accept_answer(answer)  # the same answer again, through another path
    assert await a.wait_open(20) and await b.wait_open(20)
    for link in (a, b, fresh):
        await link.close()


@pytest.mark.timeout(60)
async def test_two_links_connect_and_carry_a_message_over_loopback():
    a, b = PeerLink.create([]), PeerLink.create([])
    got: list[bytes] = []
    b.on_message = got.append
    answer = await b.answer_offer(await a.make_offer())
    await a.accept_answer(answer)
    assert await a.wait_open(20) and await b.wait_open(20)
    await a.send(b"hello")
    for _ in range(200):
        if got:
            break
        import asyncio

        await asyncio.sleep(0.05)
    assert got == [b"hello"]
    assert a.candidate_pair_kind() == "host"
    await a.close()
    await b.close()


@pytest.mark.timeout(60)
async def test_closing_while_aiortc_closes_by_itself_leaves_no_failed_task():
    """The remote left: aiortc closes the connection on its own once DTLS is closed. Our
    close() arriving then, and being cancelled (as a stopping command cancels every task),
    must not break aiortc's own close ("Task exception was never retrieved" on stderr)."""
    import asyncio
    import gc

    errors: list[dict] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    a, b = PeerLink.create([]), PeerLink.create([])
    await a.accept_answer(await b.answer_offer(await a.make_offer()))
    assert await a.wait_open(20) and await b.wait_open(20)
    await b.close()  # the remote leaves
    for _ in range(200):  # until aiortc starts closing `a` by itself
        if a.pc.signalingState == "closed":
            break
        await asyncio.sleep(0.02)
    assert a.pc.signalingState == "closed"
    closing = asyncio.ensure_future(a.close())
    await asyncio.sleep(0)
    closing.cancel()
    await asyncio.sleep(1.0)  # aiortc's own close finishes meanwhile
    del a, closing
    gc.collect()
    await asyncio.sleep(0)
    assert not errors, errors


@pytest.mark.timeout(60)
@pytest.mark.parametrize("queued", [0, 64])
async def test_a_close_sent_just_before_a_lingering_close_reaches_the_peer(queued: int):
    # aiortc's close aborts the association and drops what it still holds: a CLOSE sent
    # right before a plain close() never left (the peer saw its channel close, no reason).
    import asyncio

    from p2pcli.rtc import LINGER

    a, b = PeerLink.create([]), PeerLink.create([])
    got: list[bytes] = []
    b.on_message = got.append
    await a.accept_answer(await b.answer_offer(await a.make_offer()))
    assert await a.wait_open(20) and await b.wait_open(20)
    for _ in range(queued):
        a.send_nowait(b"x" * 16384)
    a.send_nowait(b"CLOSE")
    await a.close(linger=LINGER)
    for _ in range(100):
        if got and got[-1] == b"CLOSE":
            break
        await asyncio.sleep(0.02)
    assert len(got) == queued + 1 and got[-1] == b"CLOSE"
    await b.close()
