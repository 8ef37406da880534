"""Every change p2p makes to how its libraries behave, made by one explicit call: `apply`.

Importing a p2pcli module changes nothing. A command calls `apply()` once at its start
(cli/), and so does every test or benchmark that makes peer connections without the CLI,
so that they run the stack the commands run. What it changes, process-wide, for the peer
connections made afterwards:

- aiortc: the tuned SCTP/DTLS transports of aiortc_tuning.py (less CPU per byte), unless
  the environment says `P2P_STOCK_AIORTC=1` (benchmarks compare stock and tuned that way).
- aioice: which local addresses are offered as ICE host candidates (`--ice-host`). aioice
  has no option for it, but `Connection.gather_candidates` looks the module-level
  `aioice.ice.get_host_addresses` up at call time, so replacing that function chooses
  them. tests/test_patches.py fails if a new aioice stops looking it up.
- aioice: `Connection.connect` notices at once that its checks succeeded. aioice's loop
  starts a check, then sleeps 20 ms (the pacing timer) before it looks at the outcome,
  though a check on a LAN or loopback answers within a millisecond: every connection
  waited ~20 ms more on each side before DTLS could start. Installed only over the pinned
  aioice version, whose method `_connect` copies (tests/test_patches.py checks the copy).
  `P2P_STOCK_AIORTC=1` leaves this one on: it is aioice's, not aiortc's.
- aioice: a connectivity check is sent again after 100 ms, not 500 ms (then doubling, as
  aioice does, with two more tries so that it lives about as long). Across two NATs the
  first check toward the other side's mapping is dropped by the far router until that side
  has sent its own, so every hole-punched connection waited out one 500 ms retransmission:
  measured in the NAT lab (benchmarks/rendezvous.py), fetch to first byte went from
  0.58 s to 0.17 s. Browsers (libwebrtc) resend checks every ~50 ms while connecting; STUN
  server and TURN requests keep aioice's 500 ms. Same pinning and `P2P_STOCK_AIORTC` rule
  as the previous item (`_request` copies aioice's `StunProtocol.request`).
- aiortc: our SDPs carry one DTLS fingerprint, sha-256, as browsers' do (aiortc lists
  sha-256, sha-384 and sha-512). libdatachannel (WebTorrent in node, node-datachannel
  0.33 / libdatachannel 0.24) picks the hash for checking the peer's certificate when its
  DTLS transport starts, from the remote description if it is stored by then, else
  sha-256; and it compares with the one fingerprint it keeps from the description, not
  the sha-256 one of our three (inferred from the outcome below).
  When aiortc answers its offer, ICE can complete inside its setRemoteDescription (our
  checks came first), DTLS then starts before the description is stored, and the
  handshake failed with "unknown CA": 4 of 28 connections in one run, exactly the 4 that
  started DTLS before the description (docs/PROTOCOL.md §5.4). With sha-256 alone the
  same race is harmless: 28 of 28, 4 of them raced. On even with `P2P_STOCK_AIORTC`:
  interop, not tuning.
- python-socketio, in a process that is only a signaling client (`fetch`, `stream`):
  `load_socketio_client` imports it without redis, which its package imports for the
  pub/sub managers only a clustered server uses (~30 ms of CPU at start-up).

Not here: typer, the CLI's library: `p2p_cli.main` installs cli/fastparams.py (option
values coerced without pydantic) before it parses. Nor python-engineio: the signaling
server subclasses its server classes and gives each new session its own socket class
(`_SocketIOServer` in signaling/server.py): that is per server object, never process-wide,
and happens only when a server runs.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable, Mapping

import aioice.ice
import aioice.stun
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsFingerprint

from . import aiortc_tuning

#: Set (to anything but 0/false/no) to keep a process on stock aiortc.
STOCK_AIORTC_ENV = "P2P_STOCK_AIORTC"

_stock_get_host_addresses = aioice.ice.get_host_addresses
_stock_connect = aioice.ice.Connection.connect
_stock_request = aioice.ice.StunProtocol.request
_stock_get_fingerprints = RTCCertificate.getFingerprints
#: The aioice whose `Connection.connect` `_connect` copies.
PINNED_AIOICE_VERSION = "0.13.0"


def apply(host_addresses: Iterable[str] | None = None, *,
          stock_aiortc: bool | None = None) -> None:
    """Set every library patch for this process; a second call replaces the first.

    `host_addresses`: offer exactly these local addresses as host candidates; None or
    empty: every non-loopback interface (aioice's own choice). `stock_aiortc`: True keeps
    aiortc as it is; None: as `P2P_STOCK_AIORTC` in the environment says.
    """
    choose_host_addresses(host_addresses)
    prompt_ice_checks(True)
    quick_check_retries(True)
    one_fingerprint(True)
    if stock_aiortc is None:
        stock_aiortc = stock_aiortc_asked()
    if stock_aiortc:
        aiortc_tuning.uninstall()
    else:
        aiortc_tuning.install()


def revert() -> None:
    """Back to the libraries as they are (for tests)."""
    choose_host_addresses(None)
    prompt_ice_checks(False)
    quick_check_retries(False)
    one_fingerprint(False)
    aiortc_tuning.uninstall()


def stock_aiortc_asked(environ: Mapping[str, str] | None = None) -> bool:
    """True when the environment asks for stock aiortc (`P2P_STOCK_AIORTC` set, not 0)."""
    value = (os.environ if environ is None else environ).get(STOCK_AIORTC_ENV, "")
    return value.strip().lower() not in ("", "0", "false", "no")


def choose_host_addresses(addresses: Iterable[str] | None) -> None:
    """The aioice part of `apply` alone, for benchmarks that keep aiortc stock on purpose
    (benchmarks/bare_channel.py measures stock aiortc's ceiling)."""
    chosen = tuple(addresses or ())
    if not chosen:
        aioice.ice.get_host_addresses = _stock_get_host_addresses
        return

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (use_ipv4 and ":" not in a) or (use_ipv6 and ":" in a)]

    aioice.ice.get_host_addresses = get_host_addresses


def prompt_ice_checks(on: bool) -> bool:
    """Install `_connect` as aioice's `Connection.connect` (or put the stock one back).
    Returns whether it is installed: never over an aioice other than the pinned one."""
    on = on and aioice.__version__ == PINNED_AIOICE_VERSION
    aioice.ice.Connection.connect = _connect if on else _stock_connect  # type: ignore[method-assign]
    return on


def one_fingerprint(on: bool) -> None:
    """Our SDPs carry the sha-256 fingerprint alone (on), or aiortc's three (off)."""
    RTCCertificate.getFingerprints = (  # type: ignore[method-assign]
        _sha256_fingerprint if on else _stock_get_fingerprints)


def _sha256_fingerprint(self: RTCCertificate) -> list[RTCDtlsFingerprint]:
    return [f for f in _stock_get_fingerprints(self) if f.algorithm == "sha-256"]


async def _connect(self: aioice.ice.Connection) -> None:
    """aioice 0.13.0's `Connection.connect`, except that the checks loop also wakes up
    when the check list completes or fails, rather than only at its 20 ms tick."""
    if not self._local_candidates_end:
        raise ConnectionError("Local candidates gathering was not performed")
    if self.remote_username is None or self.remote_password is None:
        raise ConnectionError("Remote username or password is missing")
    for remote_candidate in self._remote_candidates:
        self._pair_remote_candidate(remote_candidate)
    self.sort_check_list()
    self._unfreeze_initial()
    for early_check in self._early_checks:
        self.check_incoming(*early_check)
    self._early_checks.clear()
    self._early_checks_done = True

    # The change: the outcome is awaited alongside the pacing tick. Once it is known no
    # more checks start, as in aioice (`_check_periodic` stops when the list is done).
    outcome = asyncio.ensure_future(self._check_list_state.get())
    try:
        while self._check_periodic():
            done, _ = await asyncio.wait({outcome}, timeout=0.02)
            if done:
                break
        res = await outcome if self._check_list else aioice.ice.ICE_FAILED
    finally:
        outcome.cancel()

    for check in self._check_list:
        if check.task:
            check.task.cancel()
    if res != aioice.ice.ICE_COMPLETED:
        raise ConnectionError("ICE negotiation failed")
    self._query_consent_task = asyncio.create_task(self.query_consent())


CHECK_RTO = 0.1
"Seconds before a connectivity check is first sent again (aioice: 0.5), doubling after."
CHECK_RETRANSMISSIONS = 8
"Resends of one check (aioice: 6 from 0.5 s); the last still goes out ~25 s after the first."


def quick_check_retries(on: bool) -> bool:
    """Install `_request` as aioice's `StunProtocol.request` (or put the stock one back).
    Returns whether it is installed: never over an aioice other than the pinned one."""
    on = on and aioice.__version__ == PINNED_AIOICE_VERSION
    aioice.ice.StunProtocol.request = _request if on else _stock_request  # type: ignore[method-assign]
    return on


async def _request(self: aioice.ice.StunProtocol, request: aioice.stun.Message,
                   addr: tuple[str, int], integrity_key: bytes | None = None,
                   retransmissions: int | None = None) -> tuple[aioice.stun.Message,
                                                                 tuple[str, int]]:
    """aioice 0.13.0's `StunProtocol.request`, except that a connectivity check (signed with
    the remote ICE password, aioice's default resends; consent checks ask for none) is
    resent after CHECK_RTO, CHECK_RETRANSMISSIONS times."""
    assert request.transaction_id not in self.transactions
    if integrity_key is not None:
        request.add_message_integrity(integrity_key)
    check = integrity_key is not None and retransmissions is None
    transaction = aioice.stun.Transaction(
        request, addr, self,
        retransmissions=CHECK_RETRANSMISSIONS if check else retransmissions,
        integrity_key=integrity_key,
    )
    if check:  # aioice reads its module's RETRY_RTO here and has no parameter for it
        transaction._Transaction__timeout_delay = CHECK_RTO  # type: ignore[attr-defined]
    self.transactions[request.transaction_id] = transaction
    try:
        return await transaction.run()
    finally:
        del self.transactions[request.transaction_id]


#: What python-socketio's package imports for its pub/sub managers, and a client never uses.
_SERVER_ONLY = ("redis", "valkey")


def load_socketio_client() -> None:
    """Import python-socketio for a signaling client, without redis (or valkey).

    Call it before anything imports socketio, in a process that runs no signaling server
    (the Redis manager of the clustered one, signaling/cluster.py, then reports redis
    missing). Does nothing if socketio or redis is loaded already. redis stays importable:
    only socketio's own reference to it is left empty.
    """
    if "socketio" in sys.modules or any(n in sys.modules for n in _SERVER_ONLY):
        return
    # A None entry makes `import redis` raise ImportError, which socketio's managers
    # catch (they are optional there); removed again at once.
    for name in _SERVER_ONLY:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import socketio  # noqa: F401
    finally:
        for name in _SERVER_ONLY:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
