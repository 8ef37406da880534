"""Announce fake p2p seeders of one content hash over mDNS, each one a record a fetcher
must not dial (tests/test_lan_netns.py). Prints `ready` once all are registered, then
holds them until killed.

    python mdns_hostile.py CONTENT_ID OUR_ADDRESS
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from zeroconf import ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

from p2pcli import lan


def fakes(cid: str, me: str) -> list[tuple[int, list[str], dict[str, str]]]:
    """(SRV port, addresses, TXT) of each fake: every way lan.accept refuses an answer."""
    good = {"v": "1", "h": cid}
    return [
        (8080, ["8.8.8.8"], good),  # a public address
        (8080, ["127.0.0.1"], good),  # the fetcher's own loopback
        (22, [me], good),  # a privileged port on a LAN address
        (8080, [me], {"v": "1", "h": "cd" * 32}),  # another content
        (8080, [me], {"v": "2", "h": cid}),  # a version we do not know
        (8080, [me], {"v": "1"}),  # no hash
        (8080, [me], {**good, "s": "http://signal.example.org:8080"}),  # a host name
        (8080, [me], {**good, "s": "http://127.0.0.1:9"}),  # loopback in TXT
        (8080, [me], {**good, "s": "file:///etc/passwd"}),
    ]


async def main(cid: str, me: str) -> None:
    azc = AsyncZeroconf()
    infos = []
    for i, (port, addresses, txt) in enumerate(fakes(cid, me)):
        label = lan.instance_name(cid, f"bad{i:03d}")
        infos.append(ServiceInfo(lan.SERVICE_TYPE, f"{label}.{lan.SERVICE_TYPE}", port=port,
                                 properties=txt, server=f"{label}.local.",
                                 parsed_addresses=addresses))
    await asyncio.gather(*(azc.async_register_service(info) for info in infos))
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await azc.async_close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1], sys.argv[2]))
