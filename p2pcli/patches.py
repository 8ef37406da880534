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

Not here: python-engineio. The signaling server subclasses its server classes and gives
each new session its own socket class (`_SocketIOServer` in signaling/server.py): that is
per server object, never process-wide, and happens only when a server runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import aioice.ice

from . import aiortc_tuning

#: Set (to anything but 0/false/no) to keep a process on stock aiortc.
STOCK_AIORTC_ENV = "P2P_STOCK_AIORTC"

_stock_get_host_addresses = aioice.ice.get_host_addresses


def apply(host_addresses: Iterable[str] | None = None, *,
          stock_aiortc: bool | None = None) -> None:
    """Set every library patch for this process; a second call replaces the first.

    `host_addresses`: offer exactly these local addresses as host candidates; None or
    empty: every non-loopback interface (aioice's own choice). `stock_aiortc`: True keeps
    aiortc as it is; None: as `P2P_STOCK_AIORTC` in the environment says.
    """
    choose_host_addresses(host_addresses)
    if stock_aiortc is None:
        stock_aiortc = stock_aiortc_asked()
    if stock_aiortc:
        aiortc_tuning.uninstall()
    else:
        aiortc_tuning.install()


def revert() -> None:
    """Back to the libraries as they are (for tests)."""
    choose_host_addresses(None)
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
