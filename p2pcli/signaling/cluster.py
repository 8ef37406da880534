"""Several `p2p serve-signal` nodes acting as one signaling server, through Redis.

Only loaded with ``--redis`` (it needs the ``redis`` package: ``pip install
'p2p[cluster]'``). docs/SIGNALING.md "Cluster" is the specification; in short:

- **Membership lives in Redis.** Each node keeps its own peers in its `Rooms` (the
  relay rule between two peers of one node needs nothing else) and mirrors them into
  Redis, where every node reads the whole room: ``r:<room>`` a sorted set of peer ids
  by join time, ``pr:<peer>`` the rooms of a peer, ``pn`` peer -> node, ``np:<node>``
  the peers of a node, ``rooms`` the room names, ``nodes`` node -> its figures, and
  ``hb:<node>`` the node's heartbeat, a key that expires. Writes are Lua scripts, so
  a room and its members never disagree.
- **Messages between nodes ride python-socketio's AsyncRedisManager**: its pub/sub
  channel, its connection handling and its message format (``method: emit``), with a
  ``p2p`` field that routes them here: ``relay`` (to one peer, whichever transport it
  uses), ``room`` (``new-peer`` to a room's members on every node) and ``left``
  (``peer-left`` to the members of the rooms a peer was in, once each).
- **The relay rule holds across nodes**: a message to a peer of another node is
  published only if that peer's rooms, read from Redis (then cached until it leaves),
  meet the sender's.
- **Liveness.** Every node refreshes its heartbeat each ``node_timeout / 5`` seconds;
  a node whose heartbeat expired is dead, and the first node to notice removes its
  peers from every room and announces ``peer-left`` for each: within ``node_timeout``
  plus one beat of the death.
- **Redis outages.** A node keeps serving its own peers alone; announces and leaves
  that could not be written are retried once Redis answers (the announcer then gets a
  fresh ``peer-list``). If a node's own registration is gone when Redis answers again
  (Redis restarted empty, or the others took this node for dead), nothing it wrote can
  be trusted: it closes every connection, and the clients reconnect and announce
  again, rebuilding the swarms.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import orjson
import socketio
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..errors import UsageError
from ..events import Event
from .log import ClusterNotice, LibraryError
from .rooms import Rooms, sample_in_order
from .schema import ErrorCode, Relay, SignalSchemaError, check_size

#: Prefix of every key this cluster writes (a Redis database may be shared).
PREFIX: Final = "p2p:signal:"

#: Seconds one Redis command may take before the node treats Redis as unreachable.
REDIS_TIMEOUT: Final = 2.0

#: Connections to Redis one node keeps for commands and publishing. Commands wait for a
#: free one rather than open more: under load redis-py would otherwise open one per
#: concurrent command, and opening one costs more than a hundred commands.
POOL_SIZE: Final = 16

#: Remote peers whose rooms a node remembers (for the relay rule) before it forgets all.
REMOTE_CACHE: Final = 100_000

#: Events other nodes may ask this one to deliver.
_DELIVERABLE: Final = frozenset({"offer", "answer", "ice-candidate", "new-peer", "peer-left"})

_ERRORS = (RedisError, OSError, asyncio.TimeoutError)

# KEYS are computed inside the scripts: one Redis (or a primary with Sentinel), not
# Redis Cluster, whose slots would need every key named up front.
_ANNOUNCE = """
local p, room, peer, node = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rk = p .. 'r:' .. room
local added = redis.call('ZADD', rk, 'NX', ARGV[5], peer)
redis.call('SADD', p .. 'pr:' .. peer, room)
redis.call('HSET', p .. 'pn', peer, node)
redis.call('SADD', p .. 'np:' .. node, peer)
redis.call('SADD', p .. 'rooms', room)
local n = redis.call('ZCARD', rk)
local want = tonumber(ARGV[6])
if want <= 0 or n <= want then
  return {added, n, redis.call('ZRANGE', rk, 0, -1, 'WITHSCORES')}
end
return {added, n, redis.call('ZRANDMEMBER', rk, want, 'WITHSCORES')}
"""

_LEAVE_BODY = """
local function leave(p, peer, node)
  local rooms = redis.call('SMEMBERS', p .. 'pr:' .. peer)
  for _, room in ipairs(rooms) do
    local rk = p .. 'r:' .. room
    redis.call('ZREM', rk, peer)
    if redis.call('EXISTS', rk) == 0 then redis.call('SREM', p .. 'rooms', room) end
  end
  redis.call('DEL', p .. 'pr:' .. peer)
  redis.call('HDEL', p .. 'pn', peer)
  redis.call('SREM', p .. 'np:' .. node, peer)
  return rooms
end
"""

_LEAVE = _LEAVE_BODY + "return leave(ARGV[1], ARGV[2], ARGV[3])"

_REAP = (
    _LEAVE_BODY
    + """
local p, node = ARGV[1], ARGV[2]
local out = {}
for _, peer in ipairs(redis.call('SMEMBERS', p .. 'np:' .. node)) do
  table.insert(out, {peer, leave(p, peer, node)})
end
redis.call('DEL', p .. 'np:' .. node)
redis.call('HDEL', p .. 'nodes', node)
return out
"""
)


class Hub(Protocol):
    """What the cluster needs of the node's hub (server.SignalHub)."""

    rooms: Rooms

    def log(self, event: Event) -> None: ...
    def local_members(self, room: str) -> Iterable[str]: ...
    def is_local(self, peer_id: str) -> bool: ...
    async def deliver(self, target: str, event: str, payload: dict[str, object]) -> None: ...
    async def send_event(self, peer_id: str, event: str, payload: dict[str, object]) -> None: ...
    async def drop_all(self) -> None: ...
    def stats(self) -> dict[str, object]: ...


class ClusterManager(socketio.AsyncRedisManager):
    """python-socketio's Redis pub/sub manager, with p2p's messages handed to `Cluster`."""

    cluster: Cluster | None = None
    listening: bool = False
    """Subscribed to the channel (as far as this process can tell)."""

    async def _publish(self, data: dict[str, Any]) -> None:
        # Through the cluster's pooled connections; python-socketio's own client would
        # open a connection per concurrent publish.
        cluster = self.cluster
        if cluster is None:
            await super()._publish(data)
            return
        try:
            await cluster._call(cluster.redis.publish(self.channel, self.json.dumps(data)))
        except _ERRORS as e:
            cluster._trouble(e)

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        if self.cluster is not None and "p2p" in message:
            await self.cluster.on_message(message)
        else:
            await super()._handle_emit(message)

    async def _redis_listen_with_retries(self) -> AsyncIterator[Any]:
        # python-socketio's own loop, with the wait between attempts capped at 2 s (it
        # doubles up to 60 s there): a node must hear the others soon after Redis is
        # back. Outages are reported by Cluster, once, rather than here at every try.
        retry_sleep = 0.25
        while True:
            try:
                self._redis_connect()
                await self.pubsub.subscribe(self.channel)
                self.listening = True
                retry_sleep = 0.25
                async for message in self.pubsub.listen():
                    yield message
            except Exception:
                self.listening = False
                await asyncio.sleep(retry_sleep)
                retry_sleep = min(retry_sleep * 2, 2.0)


class Cluster:
    """This node's share of a cluster: Redis membership, heartbeats, cross-node messages."""

    def __init__(self, hub: Hub, url: str, *, node_timeout: float = 10.0) -> None:
        self.hub = hub
        self.url = url
        self.node_id = uuid.uuid4().hex[:16]
        self.timeout = node_timeout
        self.interval = max(0.1, node_timeout / 5)
        # Pub/sub channels ignore the database number; name it, so that clusters on
        # two databases of one Redis do not hear each other.
        db = (urlsplit(url).path.strip("/") or "0").split("/")[0]
        self.channel = f"p2p-signal-{db}"
        self.manager = ClusterManager(
            url, channel=self.channel, redis_options={"socket_connect_timeout": REDIS_TIMEOUT}
        )
        self.manager.cluster = self
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=REDIS_TIMEOUT,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            # One immediate retry replaces a pooled connection that died with a Redis
            # restart; more would hold an announcing client up while Redis is down.
            retry=Retry(NoBackoff(), 1),
        )
        self.redis = aioredis.Redis(connection_pool=pool)
        self._announce_script = self.redis.register_script(_ANNOUNCE)
        self._leave_script = self.redis.register_script(_LEAVE)
        self._reap_script = self.redis.register_script(_REAP)
        self.redis_ok = False
        self.registered = False
        self.alive: dict[str, dict[str, Any]] = {}
        self.relayed_out = 0
        self.relayed_in = 0
        self.reaped = 0
        self._remote_rooms: dict[str, set[str]] = {}
        self._pending_join: dict[str, set[str]] = {}
        self._pending_leave: dict[str, set[str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._started_wall = time.time()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Register this node and start listening; UsageError if Redis cannot be reached."""
        try:
            await self._call(self.redis.ping())
            await self._beat()
        except _ERRORS as e:
            await self._close_clients()
            raise UsageError(
                f"cannot reach Redis at {self.url} ({_reason(e)}); check --redis / "
                "P2P_REDIS_URL and that redis-server is running"
            ) from None
        # python-socketio starts its listener at the first connection; a node must hear
        # the others (peer-left, new-peer) before that.
        self.hub.sio.manager_initialized = True  # type: ignore[attr-defined]
        self.manager.initialize()
        await self._wait_listening(REDIS_TIMEOUT)
        self._task = asyncio.ensure_future(self._heartbeats())

    async def stop(self) -> None:
        """Leave the cluster (the hub has disconnected this node's peers already)."""
        for task in (self._task, getattr(self.manager, "thread", None)):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        with contextlib.suppress(*_ERRORS):
            await self._retry_pending()
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(PREFIX + "hb:" + self.node_id)
            pipe.hdel(PREFIX + "nodes", self.node_id)
            pipe.delete(PREFIX + "np:" + self.node_id)
            await self._call(pipe.execute())
        await self._close_clients()

    async def _close_clients(self) -> None:
        with contextlib.suppress(Exception):
            await self.redis.aclose()
        with contextlib.suppress(Exception):
            await self.redis.connection_pool.disconnect()
        for client in (self.manager.pubsub, self.manager.redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _wait_listening(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.manager.listening and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.manager.listening

    # -- what the hub asks -----------------------------------------------------------------

    async def announce(self, peer: str, room: str, *, new: bool, local: int) -> list[str] | None:
        """Record `peer` in `room` for the whole cluster; return its peer-list.

        `new`: the peer was not in the room (others are told with ``new-peer``);
        `local`: members of the room on this node, the announcer included. None when
        Redis cannot be reached: the hub answers with this node's members then, and the
        announce is written (and answered again) once Redis is back.
        """
        limit = self.hub.rooms.max_peer_list
        try:
            _added, count, flat = await self._call(
                self._announce_script(
                    args=[PREFIX, room, peer, self.node_id, time.time(),
                          limit + 1 if limit > 0 else 0]
                )
            )
        except _ERRORS as e:
            self._trouble(e)
            self._pending_join.setdefault(peer, set()).add(room)
            return None
        members = sorted(
            (float(flat[i + 1]), flat[i].decode()) for i in range(0, len(flat), 2)
        )
        listed = [m for _, m in members if m != peer]
        listed = sample_in_order(listed, limit, self.hub.rooms.rng)
        if new and count > local:  # members on other nodes
            await self._publish("room", room, "new-peer", {"peerId": peer, "hash": room},
                                skip=peer)
        return listed

    async def relay(self, sender: str, rooms: set[str], event: str, relay: Relay) -> None:
        """Send a relayed message to a peer of another node, if the relay rule allows."""
        target = relay.target
        known = self._remote_rooms.get(target)
        if known is None or known.isdisjoint(rooms):
            try:
                fetched = await self._call(self.redis.smembers(PREFIX + "pr:" + target))
            except _ERRORS as e:
                self._trouble(e)
                raise SignalSchemaError(
                    ErrorCode.UNKNOWN_PEER,
                    f"cannot reach peer {target!r}: this node has lost touch with the others",
                ) from None
            known = {r.decode() for r in fetched}
            if known:
                if len(self._remote_rooms) >= REMOTE_CACHE:
                    self._remote_rooms.clear()
                self._remote_rooms[target] = known
        if known.isdisjoint(rooms):
            raise SignalSchemaError(
                ErrorCode.UNKNOWN_PEER, f"no peer {target!r} in any room you announced"
            )
        out = dict(relay.payload)
        out["fromPeer"] = sender
        check_size(event, len(orjson.dumps(out)))
        await self._publish("relay", target, event, out)
        self.relayed_out += 1

    async def leave(self, peer: str, rooms: set[str]) -> None:
        """`peer` (of this node) disconnected: remove it and tell the other nodes."""
        self._pending_join.pop(peer, None)
        try:
            await self._call(self._leave_script(args=[PREFIX, peer, self.node_id]))
        except _ERRORS as e:
            self._trouble(e)
            self._pending_leave[peer] = set(rooms)
        await self._publish("left", sorted(rooms), "peer-left", {"peerId": peer})

    async def stats(self) -> dict[str, object]:
        """The cluster's figures for /stats."""
        body: dict[str, object] = {
            "redis": "ok" if self.redis_ok else "unreachable",
            "nodes": len(self.alive),
            "nodeIds": sorted(self.alive),
        }
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hlen(PREFIX + "pn")
            pipe.scard(PREFIX + "rooms")
            peers, rooms = await self._call(pipe.execute())
        except _ERRORS as e:
            self._trouble(e)
            peers = rooms = None
        body["peers"] = peers
        body["rooms"] = rooms
        return body

    # -- messages from other nodes ---------------------------------------------------------

    async def on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("p2p")
        event = message.get("event")
        data = message.get("data")
        if isinstance(data, list) and data:
            data = data[0]
        if event not in _DELIVERABLE or not isinstance(data, dict):
            return
        where = message.get("room")
        if kind == "relay":
            if isinstance(where, str) and self.hub.is_local(where):
                self.relayed_in += 1
                await self.hub.deliver(where, event, data)
        elif kind == "room" and isinstance(where, str):
            peer = data.get("peerId")
            if isinstance(peer, str) and peer in self._remote_rooms:
                self._remote_rooms[peer].add(where)
            skip = message.get("skip_sid")
            for member in list(self.hub.local_members(where)):
                if member != skip:
                    await self.hub.send_event(member, event, data)
        elif kind == "left" and isinstance(where, list):
            peer = data.get("peerId")
            if isinstance(peer, str):
                await self._tell_left(peer, [r for r in where if isinstance(r, str)])

    async def _tell_left(self, peer: str, rooms: Iterable[str]) -> None:
        """Send ``peer-left`` to this node's peers that shared a room with `peer`."""
        self._remote_rooms.pop(peer, None)
        notify: dict[str, None] = {}
        for room in rooms:
            notify.update(dict.fromkeys(self.hub.local_members(room)))
        left = {"peerId": peer}
        for member in notify:
            await self.hub.send_event(member, "peer-left", left)

    async def _publish(
        self, kind: str, room: str | list[str], event: str, data: dict[str, object],
        skip: str | None = None,
    ) -> None:
        # python-socketio's message format, so the manager's listener on every node
        # hands it to `ClusterManager._handle_emit`. Dropped when Redis cannot be reached.
        await self.manager._publish(
            {
                "method": "emit", "event": event, "data": [data], "binary": False,
                "namespace": "/", "room": room, "skip_sid": skip, "callback": None,
                "host_id": self.manager.host_id, "p2p": kind,
            }
        )

    # -- liveness --------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self._beat()
            except _ERRORS as e:
                self._trouble(e)
            except Exception as e:  # a bug must not stop the heartbeats
                self.hub.log(LibraryError(source="p2pcli.signaling.cluster",
                                          message=repr(e)[:300]))

    async def _beat(self) -> None:
        node = self.hub.stats()
        info = {
            "node": self.node_id, "peers": node["peers"], "rooms": node["rooms"],
            "relayed": node["relayed"], "started": round(self._started_wall, 3),
            "beat": round(time.time(), 3),
        }
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(PREFIX + "hb:" + self.node_id, "1", px=int(self.timeout * 1000))
        pipe.hset(PREFIX + "nodes", self.node_id, orjson.dumps(info))
        _, created = await self._call(pipe.execute())
        if not self.redis_ok:
            if self.registered:
                self.hub.log(ClusterNotice(message="Redis is reachable again"))
            self.redis_ok = True
        if created and self.registered:
            await self._rebuild()
        self.registered = True
        await self._retry_pending()
        await self._reap()

    async def _rebuild(self) -> None:
        """Our registration is gone: have every client of this node announce again."""
        self.hub.log(ClusterNotice(
            message="this node's rooms are gone from Redis (restarted empty, or this node "
            "was taken for dead); reconnecting its clients"
        ))
        self._pending_join.clear()
        self._pending_leave.clear()
        self._remote_rooms.clear()
        # Clients announce again as soon as they reconnect; the answers to their offers
        # come back over pub/sub, so listen first.
        await self._wait_listening(2 * REDIS_TIMEOUT)
        await self.hub.drop_all()

    async def _retry_pending(self) -> None:
        for peer in list(self._pending_leave):
            await self._call(self._leave_script(args=[PREFIX, peer, self.node_id]))
            del self._pending_leave[peer]
        for peer, rooms in list(self._pending_join.items()):
            del self._pending_join[peer]
            for room in rooms:
                if room not in self.hub.rooms.rooms_of(peer):
                    continue  # left meanwhile
                local = len(list(self.hub.local_members(room)))
                listed = await self.announce(peer, room, new=True, local=local)
                if listed is None:
                    return
                # Its announce was answered with this node's peers only; now that the
                # others are known, answer it again.
                await self.hub.send_event(peer, "peer-list", {"peers": listed, "hash": room})

    async def _reap(self) -> None:
        """Find nodes whose heartbeat expired; remove their peers (one node does it)."""
        nodes = await self._call(self.redis.hgetall(PREFIX + "nodes"))
        ids = [n.decode() for n in nodes]
        pipe = self.redis.pipeline(transaction=False)
        for n in ids:
            pipe.exists(PREFIX + "hb:" + n)
        beating = await self._call(pipe.execute())
        alive: dict[str, dict[str, Any]] = {}
        for n, raw, ok in zip(ids, nodes.values(), beating, strict=True):
            if ok or n == self.node_id:
                with contextlib.suppress(ValueError):
                    alive[n] = orjson.loads(raw)
                continue
            lock = PREFIX + "reap:" + n
            if not await self._call(self.redis.set(lock, self.node_id, nx=True, ex=30)):
                continue  # another node is on it
            gone = await self._call(self._reap_script(args=[PREFIX, n]))
            for peer_raw, rooms_raw in gone:
                peer = peer_raw.decode()
                rooms = [r.decode() for r in rooms_raw]
                await self._tell_left(peer, rooms)
                await self._publish("left", rooms, "peer-left", {"peerId": peer})
            self.reaped += len(gone)
            self.hub.log(ClusterNotice(
                message=f"node {n} stopped; removed its {len(gone)} peers from their rooms"
            ))
        self.alive = alive

    def _trouble(self, error: BaseException) -> None:
        if self.redis_ok:
            self.hub.log(ClusterNotice(
                message=f"Redis unreachable ({_reason(error)}); serving this node's peers "
                "alone until it is back"
            ))
        self.redis_ok = False

    @staticmethod
    async def _call(awaitable: Any) -> Any:
        return await asyncio.wait_for(awaitable, REDIS_TIMEOUT)


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:200]
