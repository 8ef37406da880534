"""`seed`: hash a file, announce it, and serve its pieces until stopped.

With no signaling URL configured, the seeder runs the signaling server inside its own
process (the same code as `p2p serve-signal`) and puts that server's address in the link,
so `p2p seed FILE` alone is enough to share a file on a LAN.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import events, mdns, reach
from .events import EventSink
from .hashing import Progress, hash_file, open_for_seeding
from .link import make_link
from .signaling.web import watch_url
from .store import BlockChecks, SeedFile
from .swarm import Swarm, SwarmConfig
from .swarm.limiter import RateLimiter
from .tree import hash_tree
from .treestore import SeedTree

DEFAULT_EMBEDDED_PORT = 8080


@dataclass
class SeedOptions:
    path: str
    "File (or folder) to share."
    more: tuple[str, ...] = ()
    "Further files or folders: the share holds them all (a version-2 manifest)."
    embedded_signal: bool = False
    "Start a signaling server in this process (no --signal given)."
    signal_port: int = DEFAULT_EMBEDDED_PORT
    "Port of the embedded server; the next free one is used when taken (0: any)."
    public_host: str | None = None
    "Address other machines use to reach the embedded server (default: first LAN address)."
    lan: bool = True
    "Announce the share over mDNS (p2pcli/mdns.py), withdrawn when seeding stops."
    lan_hosts: tuple[str, ...] = ()
    "Addresses to announce (default: every private-network address of this machine)."


def lan_address(prefer: tuple[str, ...] = ()) -> str:
    """The address to print in links: a chosen one, else the first non-loopback IPv4."""
    if prefer:
        return prefer[0]
    for ip, _ in reach.interfaces():
        if ":" not in ip:
            addr = ipaddress.ip_address(ip)
            if not addr.is_loopback and not addr.is_link_local:
                return ip
    return "127.0.0.1"


async def _start_embedded(port: int, token: str | None):
    from .signaling.server import start_signal_server

    last: OSError | None = None
    for candidate in [port, *range(port + 1, port + 10), 0] if port else [0]:
        try:
            # With --token, the embedded server admits only clients holding the link.
            return await start_signal_server("0.0.0.0", candidate, token=token)
        except OSError as e:  # port in use: try the next one
            last = e
    raise OSError(f"no free port for the embedded signaling server ({last})")


async def seed(
    opts: SeedOptions, config: SwarmConfig, emit: EventSink, progress: Progress | None = None,
    limiter: RateLimiter | None = None,
) -> None:
    """Serve `opts.path` until cancelled (Ctrl-C) or the file changes on disk. `limiter`:
    an upload limit shared with the process's other uploads (`seed_with_torrent`)."""
    paths = [opts.path, *opts.more]
    single = not opts.more and not os.path.isdir(opts.path)
    if single:
        open_for_seeding(opts.path)  # fail fast, before any server starts
    started = time.monotonic()
    checks = BlockChecks()  # a single file's CRC tables come from its hashing: no 2nd SHA-256
    if single:
        hashing = functools.partial(hash_file, opts.path, progress, checks=checks)
        manifest, files = await asyncio.to_thread(hashing), []
    else:  # a folder or several files; errors come before any server starts too
        manifest, items = await asyncio.to_thread(hash_tree, paths, progress)
        files = items.files()  # made from lists by C loops, no Item per file
    emit(events.Hashed(
        name=manifest.name,
        size=manifest.size,
        pieces=manifest.piece_count,
        piece_size=manifest.piece_size,
        hash=manifest.content_id,
        seconds=round(time.monotonic() - started, 3),
    ))
    server = None
    if opts.embedded_signal:
        server = await _start_embedded(opts.signal_port, config.token)
        host = opts.public_host or lan_address()
        public = [f"http://{_host_for_url(host)}:{server.port}"]
        # Our own client talks to the server in this process over loopback; the link
        # carries the address other machines can reach.
        config.signal_urls = [f"http://127.0.0.1:{server.port}"]
        # A busy --port moves the server to the next free one: said, never silent.
        busy = opts.signal_port if opts.signal_port and server.port != opts.signal_port else None
        emit(events.SignalServer(url=public[0], port=server.port, busy=busy))
    else:
        public = config.signal_urls
    if manifest.is_tree:
        source: SeedFile | SeedTree = SeedTree(opts.path, manifest, files)
    else:
        source = SeedFile(open_for_seeding(opts.path)[0], manifest, checks=checks)
    swarm = Swarm(manifest.content_hash, config, emit, manifest=manifest, source=source,
                  limiter=limiter)
    announcing: asyncio.Task[mdns.Announcer | None] | None = None
    try:
        await swarm.start()
        link = make_link(manifest.content_hash, public, manifest.name, config.token,
                         config.trackers, config.peerjs)
        emit(events.Seeding(
            hash=manifest.content_id,
            link=link,
            command=f"p2p fetch '{link}'",
            watch=watch_url(public[0], manifest.content_id, config.token),
        ))
        if opts.lan:
            # In the background: zeroconf probes for a unique name (~0.75 s) first.
            announcing = asyncio.ensure_future(mdns.announce(
                manifest.content_id,
                port=server.port if server is not None else None,
                signal_url=None if server is not None else public[0],
                token=bool(config.token), hosts=opts.lan_hosts, emit=emit,
            ))
        reporter = asyncio.ensure_future(_report(swarm))
        try:
            await swarm.fatal_event.wait()
        finally:
            reporter.cancel()
        assert swarm.fatal is not None
        raise swarm.fatal
    finally:
        if announcing is not None:
            await _withdraw(announcing)
        await swarm.close()
        source.close()
        if server is not None:
            await server.close()


async def _withdraw(announcing: asyncio.Task[mdns.Announcer | None]) -> None:
    """Send the LAN goodbyes (a fetcher's cache forgets us now, not in 2 minutes), whether
    the announcement finished or is cut short by Ctrl-C."""
    if not announcing.done():
        announcing.cancel()
    try:
        announcer = await announcing
    except asyncio.CancelledError:
        return
    if announcer is not None:
        await announcer.close()


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _report(swarm: Swarm) -> None:
    while True:
        await asyncio.sleep(1.0)
        core = swarm.core
        swarm.emit(events.Status(
            peers=len(core.usable_peers()), sent=core.bytes_up, rate=round(core.up_rate.value)
        ))


async def seed_with_torrent(opts: SeedOptions, config: SwarmConfig, emit: EventSink,
                            on_magnet: Callable[[str], None],
                            progress: Progress | None = None) -> None:
    """`p2p seed PATH --torrent`: PATH as a p2p share and as a BitTorrent v1 torrent, from
    one process until cancelled. Two swarms with their own connections (docs/PROTOCOL.md
    §5.2), under one upload limit (§5.6). The magnet link comes first (`on_magnet`), then
    the share's `Seeding` event."""
    from .btsession import seed_torrent

    limiter = RateLimiter(config.max_upload_rate)
    linked = asyncio.Event()

    def magnet(uri: str) -> None:
        on_magnet(uri)
        linked.set()

    tasks = [asyncio.ensure_future(seed_torrent(Path(opts.path), config.trackers, emit=emit,
                                                on_link=magnet, limiter=limiter))]
    waiter = asyncio.ensure_future(linked.wait())
    try:
        await asyncio.wait([tasks[0], waiter], return_when=asyncio.FIRST_COMPLETED)
        if tasks[0].done():
            tasks[0].result()  # it failed before announcing: say why
        tasks.append(asyncio.ensure_future(seed(opts, config, emit, progress, limiter)))
        if limiter.rate:
            tasks.append(asyncio.ensure_future(_report_limit(limiter, emit)))
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            t.result()
    finally:
        for t in [waiter, *tasks]:
            t.cancel()
        await asyncio.gather(waiter, *tasks, return_exceptions=True)


async def _report_limit(limiter: RateLimiter, emit: EventSink) -> None:
    while True:
        await asyncio.sleep(1.0)
        assert limiter.rate is not None
        emit(events.UploadLimit(rate=int(limiter.rate), granted=dict(limiter.granted),
                                seconds=round(limiter.elapsed(time.monotonic()), 3)))
