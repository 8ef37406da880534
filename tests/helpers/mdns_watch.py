"""Print every p2p share seen on the LAN as it appears and disappears, one JSON line each.

A stand-in for a long-running mDNS browser (Bonjour's, Avahi's) in tests/test_lan_netns.py:
it keeps the records in its cache, so a share it saw disappears only when a goodbye packet
withdraws it (or when the 75-minute PTR TTL runs out, far past any test's wait).
Runs until killed.
"""

from __future__ import annotations

import asyncio
import json
import sys

from zeroconf import ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

from p2pcli.lan import SERVICE_TYPE


async def main() -> None:
    azc = AsyncZeroconf()

    def on_change(zeroconf, service_type: str, name: str, state_change) -> None:
        state = {ServiceStateChange.Added: "added",
                 ServiceStateChange.Removed: "removed"}.get(state_change)
        if state:
            print(json.dumps({"state": state, "name": name}), flush=True)

    browser = AsyncServiceBrowser(azc.zeroconf, SERVICE_TYPE, handlers=[on_change])
    print(json.dumps({"state": "browsing"}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await browser.async_cancel()
        await azc.async_close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
