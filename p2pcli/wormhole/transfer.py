"""`send` and `receive`: the code exchange (pake.py) wired to signaling and the swarm.

Thin adapters. A `CodeMeeting` stands where a swarm's rendezvous stands (swarm/meet.py):
it joins the code's room instead of the content hash's, runs the exchange on the relays,
and lets through to the swarm only the offer / answer of a peer that proved the code and
whose fingerprint checked out. Everything after that is the normal seed and download
path (verified manifest and pieces); there is no peer exchange and no public announce.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import getpass
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .. import events as ev
from ..download import Download, FetchOptions, ReaderGone, writes_stdout
from ..errors import ManifestError, NoPeers, P2PError, UsageError
from ..events import EventSink
from ..hashing import Progress, hash_file, open_for_seeding
from ..manifest import Manifest, check_name
from ..signaling.client import SignalHandlers, SignalingClient
from ..store import BlockChecks, SeedFile, check_output
from ..swarm import Swarm, SwarmConfig
from ..swarm.meet import MeetHandlers, Meeting
from ..tree import hash_tree
from ..treestore import SeedTree
from . import pake
from .code import Code, generate
from .events import CodeOffer, CodeReady, CodeVerified, Sent
from .relays import BROADCAST

log = logging.getLogger(__name__)

#: Seconds a receiver waits for the sender's reply to its hello.
HELLO_TIMEOUT = 20.0
#: Seconds past the swarm's connect timeout an admitted receiver has to connect.
JOIN_GRACE = 5.0
#: Codes tried when the room of a new code is already busy.
ROOM_ATTEMPTS = 8


class _Dispatch:
    """SignalHandlers whose target can change: the receiver's client outlives its first
    user (the exchange) and is handed to the swarm's meeting."""

    def __init__(self) -> None:
        self.target: SignalHandlers = SignalHandlers()
        self.ice: dict | None = None
        "The server's last ice-config: it comes at connect, before the swarm exists."

    def handlers(self) -> SignalHandlers:
        async def call(name: str, *args: object) -> None:
            if name == "ice_config":
                self.ice = args[0]  # type: ignore[assignment]
            fn = getattr(self.target, name)
            result = fn(*args)
            if asyncio.iscoroutine(result):
                await result

        return SignalHandlers(
            peer_list=lambda p: call("peer_list", p), new_peer=lambda p: call("new_peer", p),
            peer_left=lambda p: call("peer_left", p),
            signal=lambda k, p, d: call("signal", k, p, d),
            ice_config=lambda c: call("ice_config", c))


class PrivateSwarm(Swarm):
    """A swarm that meets peers through one given meeting only: no public rendezvous, no
    peer exchange (so nobody is introduced who did not prove the code)."""

    def __init__(self, *args, meeting: Callable[[MeetHandlers], CodeMeeting],
                 public: bool = False, **kw) -> None:
        super().__init__(*args, **kw)
        self._make_meeting = meeting
        self.public = public
        "`receive --seed-after --public-seed`: also the content hash's public rendezvous."

    def make_meetings(self, handlers: MeetHandlers) -> list[Meeting]:
        code = [self._make_meeting(handlers)]
        return code + super().make_meetings(handlers) if self.public else code

    def after_start(self) -> list[Meeting]:
        if self.public:
            return super().after_start()
        return []  # no peer exchange: nobody is introduced who did not prove the code


@dataclass
class CodeMeeting:
    """Base of both sides' meeting: the room, the client, the swarm's handlers."""

    client: Relay
    room: str
    content_id: str
    h: MeetHandlers
    kind = "code room"
    prefix = ""
    addressed_offers = True
    ice: dict | None = None

    async def _ice(self) -> None:
        """Hand the swarm the STUN/TURN servers the server sent before it existed."""
        if self.ice is not None:
            await self.h.ice_config(self.ice)

    @property
    def url(self) -> str:
        return self.client.url or self.client.urls[0]

    async def close(self) -> None:
        await self.client.close()


class SenderMeeting(CodeMeeting):
    def __init__(self, client: Relay, room: str, content_id: str, h: MeetHandlers,
                 state: pake.Sender, fail: Callable[[P2PError], None], prefix: str = ""
                 ) -> None:
        super().__init__(client, room, content_id, h)
        self.state, self.fail = state, fail
        # Beside a public rendezvous (--public-seed), whose peer ids are bare too, the
        # swarm routes its replies by this prefix (swarm/meet.py meeting_for): ours carry it.
        self.prefix = prefix

    async def start(self) -> None:
        await self._ice()  # connected and in the room already (see `send`)

    async def on_signal(self, kind: str, peer: str, data: dict) -> None:
        w = data.get("wormhole")
        if not isinstance(w, dict) or data.get("hash") != self.room:
            return
        state, now = self.state, time.monotonic()
        try:
            if kind == "offer" and not data.get("offer"):
                await self._relay("answer", peer, {"wormhole": state.on_hello(peer, w, now)})
            elif kind == "offer":
                verdict, refusal = state.on_offer(peer, w, pake.sdp_fingerprint(data["offer"]))
                if verdict is None:
                    pass  # the receiver took another peer's answer (tracker/PeerJS room)
                elif refusal is not None:
                    await self._relay("answer", peer, {"wormhole": refusal})
                else:
                    self.h.emit(CodeVerified(peer=peer))
                    await self.h.signal("offer", self.prefix + peer,
                                        {"hash": self.content_id, "offer": data["offer"]})
            elif kind == "ice-candidate" and "error" in w:
                state.on_notice(peer, w)
        except pake.BadMessage as e:
            log.info("bad code exchange message from %s: %s", peer, e)
            state.on_peer_gone(peer)
        self.check()

    def check(self) -> None:
        """Stop the command once no receiver can be admitted any more."""
        if self.state.stopped(time.monotonic()):
            self.fail(self.state.failure() or pake.CodeRefused("the code is spent"))

    async def on_peer_left(self, peer: str) -> None:
        admitted = self.state.is_admitted(peer)
        self.state.on_peer_gone(peer)
        if admitted:
            await self.h.peer_left(self.prefix + peer)
        self.check()

    async def send(self, kind: str, peer: str, payload: dict) -> None:
        peer = peer.removeprefix(self.prefix)
        if not self.state.is_admitted(peer):
            return  # the swarm never heard of anyone else; nothing leaves for them
        out = {k: v for k, v in payload.items() if k != "hash"}
        if kind == "answer":
            out["wormhole"] = self.state.answer_tags(
                peer, pake.sdp_fingerprint(payload.get("answer")))
        await self._relay(kind, peer, out)

    async def _relay(self, kind: str, peer: str, payload: dict) -> None:
        await self.client.send(kind, peer, {"hash": self.room, **payload})


class ReceiverMeeting(CodeMeeting):
    def __init__(self, client: Relay, room: str, content_id: str, h: MeetHandlers,
                 state: pake.Receiver, sender: str, fail: Callable[[P2PError], None]) -> None:
        super().__init__(client, room, content_id, h)
        self.state, self.sender, self.fail = state, sender, fail

    async def start(self) -> None:
        await self._ice()
        await self.h.peer_list([self.sender])

    async def on_signal(self, kind: str, peer: str, data: dict) -> None:
        w = data.get("wormhole")
        if (kind == "offer" and peer != self.sender and isinstance(w, dict) and "pake" in w
                and not data.get("offer")):
            # Another receiver's hello: we serve nothing (yet); say so, so it asks the
            # room's next peer at once instead of waiting for us (_hello).
            await self.client.send("answer", peer, {
                "hash": self.room, "wormhole": {"v": pake.PROTOCOL, "error": "not-serving"}})
            return
        if kind == "answer" and peer != self.sender and isinstance(w, dict):
            await _release(self.client, self.room, self.state, peer, w)
            return
        if peer != self.sender or kind != "answer" or not isinstance(w, dict):
            return
        try:
            verdict = self.state.on_answer(w, pake.sdp_fingerprint(data.get("answer")))
        except P2PError as e:
            self.fail(e)
            return
        if verdict is not pake.Verdict.OK:
            await _notice(self.client, peer, self.room, self.state.decline("tampered"))
            self.fail(pake.error_for(verdict, "the sender"))
            return
        self.h.emit(CodeVerified(peer=peer))
        await self.h.signal("answer", peer, {"hash": self.content_id, "answer": data["answer"]})

    async def on_peer_left(self, peer: str) -> None:
        if peer == self.sender:
            await self.h.peer_left(peer)

    async def send(self, kind: str, peer: str, payload: dict) -> None:
        if peer != self.sender:
            return
        out = {k: v for k, v in payload.items() if k != "hash"}
        if kind == "offer":
            out["wormhole"] = self.state.offer_tags(pake.sdp_fingerprint(payload.get("offer")))
        await self.client.send(kind, peer, {"hash": self.room, **out})


#: Seconds a receiver gives a notice to leave before it disconnects (python-socketio
#: queues an emit; closing at once can drop it, and the sender would only see us leave).
NOTICE_FLUSH = 0.3


async def _notice(client: Relay, peer: str, room: str, notice: dict) -> None:
    """Tell the sender why we stop, on an end-of-candidates relay (PROTOCOL.md 4.2)."""
    await client.send("ice-candidate", peer, {"hash": room, "candidate": None,
                                              "wormhole": notice})
    await asyncio.sleep(NOTICE_FLUSH)


async def _release(client: Relay, room: str, state: pake.Receiver, peer: str, w: dict
                   ) -> None:
    """A serving peer's message 2 after we took another (tracker/PeerJS: our hello went
    to all): prove the code to it, `elsewhere`, so it takes its try back (PROTOCOL.md
    4.4). No wait for the flush: nothing stops after it."""
    if "pake" not in w:
        return
    try:
        notice = state.release(w)
    except P2PError as e:
        log.info("bad code exchange message from %s: %s", peer, e)
        return
    if notice is not None:
        await client.send("ice-candidate", peer, {"hash": room, "candidate": None,
                                                  "wormhole": notice})


async def _keep_releasing(client: Relay, dispatch: _Dispatch, state: pake.Receiver,
                          room: str, chosen: str,
                          answers: asyncio.Queue[tuple[str, dict | None]]) -> None:
    """From the answer we took until the meeting with its peer takes over (the prompt
    may take minutes): release every other answer, those queued already and later ones."""
    async def on_signal(kind: str, peer: str, data: dict) -> None:
        w = data.get("wormhole")
        if kind == "answer" and peer != chosen and isinstance(w, dict):
            await _release(client, room, state, peer, w)

    dispatch.target = SignalHandlers(signal=on_signal)
    while not answers.empty():
        peer, w = answers.get_nowait()
        if w is not None and peer != chosen:
            await _release(client, room, state, peer, w)


def _attach(dispatch: _Dispatch, meeting: CodeMeeting) -> None:
    meeting.ice = dispatch.ice
    dispatch.target = SignalHandlers(
        peer_list=lambda peers: None, new_peer=lambda p: None,
        peer_left=meeting.on_peer_left, signal=meeting.on_signal,
        ice_config=meeting.h.ice_config)


class Relay(Protocol):
    """What the exchange needs of a rendezvous: a SignalingClient, or relays.CodeTracker
    / relays.CodePeerJS (which carry the messages inside SDPs)."""

    url: str | None
    urls: list[str]

    async def send(self, kind: str, peer: str, payload: dict) -> None: ...

    async def close(self) -> None: ...


async def _join(config: SwarmConfig, room: str, dispatch: _Dispatch, *, sender: bool
                ) -> tuple[Relay, list[str]]:
    """Connect to the code's rendezvous, join `room`, and return the peers already there.
    One rendezvous per code: the signaling server, else the first tracker, else the first
    PeerJS server (PROTOCOL.md 4.5)."""
    if not config.signal_urls:
        from .relays import CodePeerJS, CodeTracker

        relay: CodeTracker | CodePeerJS = (
            CodeTracker(config.trackers[0], room, dispatch.handlers(), sender=sender)
            if config.trackers else
            CodePeerJS(config.peerjs[0], room, dispatch.handlers(), sender=sender,
                       find_timeout=config.timeout))
        await relay.connect()
        try:
            return relay, await relay.join()  # type: ignore[return-value]
        except BaseException:
            await relay.close()
            raise
    listed: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()

    def peer_list(peers: list[str]) -> None:
        if not listed.done():
            listed.set_result(peers)

    dispatch.target = SignalHandlers(peer_list=peer_list)
    client = SignalingClient(config.signal_urls, dispatch.handlers(), token=config.token,
                             retries=config.retries, timeout=config.timeout)
    await client.connect()
    await client.announce(room, os.urandom(8).hex())
    try:
        return client, await asyncio.wait_for(listed, HELLO_TIMEOUT)
    except TimeoutError:
        await client.close()
        raise NoPeers("the signaling server did not answer joining the code's room") from None


def _need_rendezvous(config: SwarmConfig) -> None:
    if not (config.signal_urls or config.trackers or config.peerjs):
        raise UsageError("a code needs a rendezvous: give --signal, --tracker or --peerjs")


@dataclass
class SendOptions:
    paths: list[str]
    tries: int = pake.DEFAULT_TRIES
    words: int = 2
    expire: float | None = None
    sender: str = ""


async def _hash_share(paths: list[str], emit: EventSink, progress: Progress | None
                      ) -> tuple[Manifest, SeedFile | SeedTree]:
    """The manifest of what is sent (one file, or a folder share) and its source."""
    started = time.monotonic()
    if len(paths) == 1 and not os.path.isdir(paths[0]):
        open_for_seeding(paths[0])
        checks = BlockChecks()  # from the hashing: see seed.py
        manifest = await asyncio.to_thread(
            functools.partial(hash_file, paths[0], progress, checks=checks))
        source: SeedFile | SeedTree = SeedFile(open_for_seeding(paths[0])[0], manifest,
                                               checks=checks)
    else:
        manifest, items = await asyncio.to_thread(hash_tree, paths, progress)
        source = SeedTree(paths[0], manifest, [(i.path, i.size) for i in items if not i.folder])
    emit(ev.Hashed(name=manifest.name, size=manifest.size, pieces=manifest.piece_count,
                   piece_size=manifest.piece_size, hash=manifest.content_id,
                   seconds=round(time.monotonic() - started, 3)))
    return manifest, source


async def send(opts: SendOptions, config: SwarmConfig, emit: EventSink,
               progress: Progress | None = None) -> ev.Event:
    """Hash, print a code, serve the one receiver that proves it, until it disconnects."""
    _need_rendezvous(config)
    manifest, source = await _hash_share(opts.paths, emit, progress)
    dispatch = _Dispatch()
    for _ in range(ROOM_ATTEMPTS):
        code = generate(words=opts.words)
        client, peers = await _join(config, code.room(), dispatch, sender=True)
        if not peers:
            break
        await client.close()  # someone else's code has this number: take another
    else:
        raise P2PError("every code tried was busy on the signaling server; try again")
    offer = {"name": manifest.name, "size": manifest.size, "hash": manifest.content_id,
             "from": opts.sender or getpass.getuser()}
    now = time.monotonic()
    state = pake.Sender(code, offer, tries=opts.tries,
                        expires_at=None if opts.expire is None else now + opts.expire)
    swarm: PrivateSwarm

    def make(h: MeetHandlers) -> CodeMeeting:
        m = SenderMeeting(client, code.room(), manifest.content_id, h, state, swarm.fail)
        _attach(dispatch, m)
        return m

    left = asyncio.Event()
    joined: list[str] = []
    admitted_at: float | None = None

    def watch(e: ev.Event) -> None:
        # The receiver closes its connection once its download is complete.
        if isinstance(e, ev.PeerLeft) and state.is_admitted(e.peer):
            left.set()
        if isinstance(e, ev.PeerJoined):
            joined.append(e.peer)
        emit(e)

    swarm = PrivateSwarm(manifest.content_hash, config, watch, manifest=manifest,
                         source=source, meeting=make)
    try:
        await swarm.start()
        emit(CodeReady(code=str(code), name=manifest.name, size=manifest.size))
        while not left.is_set():
            if swarm.fatal is not None:
                raise swarm.fatal
            now = time.monotonic()
            if state.admitted is not None and admitted_at is None:
                admitted_at = now
            if admitted_at is not None and not joined and (
                    now - admitted_at > config.connect_timeout + JOIN_GRACE):
                raise NoPeers("the receiver proved the code but its connection never opened "
                              "(firewall? try --ice-server); send again for a new code")
            state.on_timer(now)
            meeting = swarm.meetings[0]
            assert isinstance(meeting, SenderMeeting)
            meeting.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(left.wait()), 0.2)
        sent = swarm.core.bytes_up
        if sent < manifest.size:
            raise NoPeers(f"the receiver left after {sent} of {manifest.size} bytes; "
                          "send again for a new code")
        done = Sent(peer=state.admitted or "", bytes=sent)
        emit(done)
        return done
    finally:
        await swarm.close()
        source.close()


Confirm = Callable[[CodeOffer], Awaitable[bool]]

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Proven:
    """A receiver's state once the sender proved the code and the offer was accepted: the
    client and its room, ready to be handed to a `PrivateSwarm`'s meeting."""

    client: Relay
    dispatch: _Dispatch
    state: pake.Receiver
    sender: str
    room: str
    offer: CodeOffer
    handed_over: bool = False

    def swarm(self, config: SwarmConfig, emit: EventSink, open_store) -> PrivateSwarm:
        """The swarm that downloads the offer, meeting only the proven sender."""
        swarm: PrivateSwarm

        def meet(h: MeetHandlers) -> CodeMeeting:
            meeting = ReceiverMeeting(self.client, self.room, self.offer.hash, h, self.state,
                                      self.sender, swarm.fail)
            _attach(self.dispatch, meeting)
            self.handed_over = True  # the meeting closes the client from now on
            return meeting

        swarm = PrivateSwarm(bytes.fromhex(self.offer.hash), config, emit,
                             open_store=open_store, meeting=meet)
        return swarm

    async def close(self) -> None:
        """Close the client unless a swarm took it over."""
        if not self.handed_over:
            await self.client.close()


#: Seconds a receiver that broadcast its hello (tracker) keeps listening after a "not
#: this peer" refusal, for the answer of a peer that serves the code.
REFUSAL_GRACE = 3.0


async def _hello(client: Relay, dispatch: _Dispatch, state: pake.Receiver, code: Code,
                 peers: list[str]) -> tuple[str, dict]:
    """Message 1 to the room's peers until one serves the code: returns (that peer, its
    sealed offer). A room may hold the sender, receivers (which answer "not-serving"),
    and `receive --seed-after` receivers serving on (pake.Seeder); a sender that admitted
    someone answers "used". Those refusals (pake.PASS_ON) send us on to the next peer.
    Socket.IO: one peer at a time, oldest first (the sender joined first), so no serving
    peer spends a try on a hello we would not finish. A tracker or PeerJS room has no
    order: every peer found gets the hello at once, and the first real answer wins."""
    room = code.room()
    answers: asyncio.Queue[tuple[str, dict | None]] = asyncio.Queue()

    def on_signal(kind: str, peer: str, data: dict) -> None:
        if kind == "answer" and isinstance(data.get("wormhole"), dict):
            answers.put_nowait((peer, data["wormhole"]))

    dispatch.target = SignalHandlers(signal=on_signal,
                                     peer_left=lambda p: answers.put_nowait((p, None)))
    loop = asyncio.get_running_loop()
    first = state.start()
    refused: pake.CodeRefused | None = None
    gone = False
    rounds = ([[p] for p in peers] if isinstance(client, SignalingClient) else [list(peers)])
    for targets in rounds:
        for peer in targets:
            await client.send("offer", peer, {"hash": room, "wormhole": first})
        pending = set(targets)
        deadline = loop.time() + HELLO_TIMEOUT
        while pending:
            try:
                peer, w = await asyncio.wait_for(answers.get(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                break  # a silent peer (a receiver of an older version): the next one
            if peer not in pending and BROADCAST not in pending:
                continue  # a late answer from a peer we moved on from
            if w is None:
                gone = True
                pending.discard(peer)
                continue
            try:
                sealed = state.on_hello(w)
            except pake.CodeRefused as e:
                if e.reason not in pake.PASS_ON:
                    raise
                rank = pake.PASS_ON_RANK
                if refused is None or rank[e.reason] > rank[refused.reason]:
                    refused = e  # "busy"/"used" say more than "closed", than "not-serving"
                pending.discard(peer)
                if BROADCAST in pending:  # others may still answer: a little longer
                    deadline = min(deadline, loop.time() + REFUSAL_GRACE)
            except pake.WrongCode:
                await _notice(client, peer, room, state.decline("wrong-code"))
                raise
            else:
                await _keep_releasing(client, dispatch, state, room, peer, answers)
                return peer, sealed
    if refused is not None:
        raise refused
    if gone:
        raise NoPeers("the sender left before answering")
    raise NoPeers("the sender did not answer the code exchange")


async def prove(code: Code, config: SwarmConfig, emit: EventSink, confirm: Confirm,
                check: Callable[[CodeOffer], None] | None = None) -> Proven:
    """Messages 1 and 2 (PROTOCOL.md 4.2): prove `code` to its sender, show what it
    offers, `check` it (raising a P2PError) and ask. Raises (after telling the sender)
    for a wrong code, a failed check or a refusal."""
    _need_rendezvous(config)
    dispatch = _Dispatch()
    client, peers = await _join(config, code.room(), dispatch, sender=False)
    try:
        if not peers:
            raise NoPeers(f"nobody is sending with code {code.number}-...: the sender "
                          "stopped, the code expired or was used; check the code")
        state = pake.Receiver(code)
        sender, sealed = await _hello(client, dispatch, state, code, peers)
        offer = _offer_event(sealed)
        emit(offer)
        try:
            if check is not None:
                check(offer)  # e.g. the file is there already: said before any connection
            accepted = await confirm(offer)
        except P2PError:
            await _notice(client, sender, code.room(), state.decline("declined"))
            raise
        if not accepted:
            await _notice(client, sender, code.room(), state.decline("declined"))
            raise pake.CodeRefused("declined: nothing was written", exit_code=0)
    except BaseException:
        await client.close()
        raise
    return Proven(client, dispatch, state, sender, code.room(), offer)


@dataclass
class SeedAfter:
    """`receive --seed-after`: serve the content on under the same code."""

    tries: int = pake.DEFAULT_TRIES
    public: bool = False
    "`--public-seed`: also announce the content hash (as `fetch --seed-after`)."


async def receive(code: Code, config: SwarmConfig, opts: FetchOptions, emit: EventSink,
                  confirm: Confirm, seed_after: SeedAfter | None = None) -> ev.Event:
    """Prove `code` to its sender, show what it sends, and download it once confirmed;
    with `seed_after`, then serve it under the code until stopped (`seed_on`)."""
    proven = await prove(code, config, emit, confirm, lambda o: _check_output(opts, o))
    store = None
    try:
        offer = proven.offer
        dl = Download(bytes.fromhex(offer.hash), config, opts, emit)
        dl.swarm = proven.swarm(config, emit, dl.open_store)
        dl.check_output_early()
        reporter = asyncio.ensure_future(dl.report())
        closed = False
        try:
            await dl.start()
            while dl.done is None:
                await dl.step()
            if dl.done.name != offer.name:
                log.info("sealed name %r, manifest name %r", offer.name, dl.done.name)
            if seed_after is None:
                return dl.done
            # Keep the verified file open; leave the sender (it sees its receiver finish
            # and stops, as for any receiver), then serve from a swarm of our own.
            dl.serve_from_final()
            manifest, store, dl.store = dl.swarm.manifest, dl.store, None
            reporter.cancel()
            await dl.close()
            closed = True
        except ReaderGone:
            emit(ev.ReaderGone(written_pieces=dl.written))
            return ev.ReaderGone(written_pieces=dl.written)
        finally:
            reporter.cancel()
            if not closed:
                await dl.close()
        assert manifest is not None and store is not None
        return await seed_on(code, config, manifest, store, seed_after, emit)
    finally:
        await proven.close()
        if store is not None:
            store.close()


async def seed_on(code: Code, config: SwarmConfig, manifest: Manifest, source, opts: SeedAfter,
                  emit: EventSink) -> ev.Event:
    """Serve `manifest` from `source` to every peer that proves `code` (pake.Seeder),
    in the code's room as a sender is, until Ctrl-C or the code closes (wrong tries).
    The content hash is announced nowhere unless `opts.public`."""
    from ..link import make_link
    from .events import CodeSeeding

    dispatch = _Dispatch()
    client, _ = await _join(config, code.room(), dispatch, sender=True)
    offer = {"name": manifest.name, "size": manifest.size, "hash": manifest.content_id,
             "from": getpass.getuser()}
    state = pake.Seeder(code, offer, tries=opts.tries)
    swarm: PrivateSwarm
    made: list[SenderMeeting] = []
    prefix = "code:" if opts.public else ""

    def make(h: MeetHandlers) -> CodeMeeting:
        m = SenderMeeting(client, code.room(), manifest.content_id, h, state, swarm.fail,
                          prefix=prefix)
        _attach(dispatch, m)
        made.append(m)
        return m

    def watch(e: ev.Event) -> None:
        # A tracker never says a peer left: the swarm's link closing does, so a closed
        # code stops once the peers it serves are gone whatever the rendezvous.
        if isinstance(e, ev.PeerLeft) and e.peer.startswith(prefix):
            state.on_peer_gone(e.peer.removeprefix(prefix))
        emit(e)

    swarm = PrivateSwarm(manifest.content_hash, config, watch, manifest=manifest,
                         source=source, meeting=make, public=opts.public)
    try:
        await swarm.start()
        link = None
        if opts.public:
            link = make_link(manifest.content_hash, config.signal_urls, manifest.name,
                             config.token, config.trackers, config.peerjs)
        emit(CodeSeeding(code=str(code), hash=manifest.content_id, tries=opts.tries,
                         link=link))
        while swarm.fatal is None:
            state.on_timer(time.monotonic())
            made[0].check()  # the code closed after wrong tries: stop, saying why
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(swarm.fatal_event.wait()), 0.5)
        raise swarm.fatal
    finally:
        await swarm.close()


async def stream_code(code: Code, config: SwarmConfig, opts, emit: EventSink,
                      confirm: Confirm) -> ev.Event:
    """`p2p stream CODE`: the code exchange, then `p2p stream`'s machinery (local HTTP
    with ranges, a player) over a swarm that meets only the proven sender. `opts` is a
    p2pcli.stream.StreamOptions."""
    from ..link import Target
    from ..stream import preflight, stream

    def check(offer: CodeOffer) -> None:
        preflight(Target(bytes.fromhex(offer.hash), name=offer.name), opts)

    proven = await prove(code, config, emit, confirm, check)
    try:
        # The sealed name is the sender's, authenticated by the code: it may name the URL
        # before the manifest comes (the manifest, verified against the hash, decides).
        target = Target(bytes.fromhex(proven.offer.hash), name=proven.offer.name)
        return await stream(target, config, opts, emit,
                            swarm_for=lambda dl: proven.swarm(config, emit, dl.open_store))
    finally:
        await proven.close()


def _check_output(opts: FetchOptions, offer: CodeOffer) -> None:
    """Before accepting: a file already where the offer's name would land is said at once
    (and the sender told we declined), not once the connection is up and the sender waits
    for a download that never starts. The manifest's own check still runs; a folder there
    may be a folder share's partial download, which resumes."""
    try:
        check_name(offer.name)
    except ManifestError:
        return  # not a name the manifest accepts: the download refuses it itself
    if writes_stdout(opts):
        return
    final = Path(opts.output) if opts.output else Path.cwd() / offer.name
    if final.is_dir():
        final = final / offer.name
    if not final.is_dir():
        check_output(final, force=opts.force)


def _offer_event(sealed: dict) -> CodeOffer:
    name, size, h, sender = (sealed.get(k) for k in ("name", "size", "hash", "from"))
    if not (isinstance(name, str) and isinstance(size, int) and isinstance(h, str)
            and _HEX64.fullmatch(h) and isinstance(sender, str)):
        raise pake.BadMessage("bad code exchange message: the sealed offer is malformed")
    return CodeOffer(name=name, size=size, sender=sender, hash=h)
