"""The swarm: every peer of one content hash.

`core.SwarmCore` decides (sans-IO); `node.Swarm` connects it to aiortc, signaling and
threads. The other modules each hold one concern of the core: `peer` (what we know of one
peer), `manifest_fetch` (getting the manifest from a peer), `rates`, `actions` (what the
core asks the adapter to do), `diagnose` (the error when nobody could help), `config` and
`limiter` (the upload limit).
"""

from .config import SwarmConfig
from .core import SwarmCore
from .diagnose import no_peers_error
from .node import Swarm

__all__ = ["Swarm", "SwarmConfig", "SwarmCore", "no_peers_error"]
