"""p2p core: content addressing, signaling, the peer wire protocol and the swarm.

Nothing in this package writes to stdout: stdout belongs to `p2p fetch` content.
"""

from __future__ import annotations

__version__ = "0.1.0"
