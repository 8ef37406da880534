"""The swarm: every peer of one content hash.

`core.SwarmCore` decides (sans-IO); `node.Swarm` connects it to aiortc, signaling and
threads. The other modules each hold one concern of the core: `peer` (what we know of one
peer), `manifest_fetch` (getting the manifest from a peer), `rates`, `actions` (what the
core asks the adapter to do), `diagnose` (the error when nobody could help), `config` and
`limiter` (the upload limit), `pex` and `pexmeet` (peer exchange: the policy, and the
meeting that carries its signals).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import SwarmConfig
from .core import SwarmCore
from .diagnose import no_peers_error

if TYPE_CHECKING:
    from .node import Swarm

__all__ = ["Swarm", "SwarmConfig", "SwarmCore", "no_peers_error"]


def __getattr__(name: str) -> Any:
    # `node` imports aiortc and the Socket.IO client, a large share of a command's start-up:
    # loaded on first use of `Swarm`, so the CLI can build a SwarmConfig (and `p2p stream`
    # publish its URL) without them.
    if name == "Swarm":
        from .node import Swarm

        return Swarm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
