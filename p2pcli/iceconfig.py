"""ICE servers handed out by the signaling server (the `ice-config` event), as aiortc objects.

The event carries a browser-shaped `RTCConfiguration` dict:
`{"iceServers": [{"urls": "turn:host:3478" | [...], "username": "...", "credential": "..."}]}`.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCIceServer

MAX_SERVERS = 8


def servers_from_config(cfg: dict[str, Any]) -> list[RTCIceServer]:
    """Parse an `ice-config` payload; malformed entries are skipped, never fatal."""
    out: list[RTCIceServer] = []
    entries = cfg.get("iceServers") if isinstance(cfg, dict) else None
    if not isinstance(entries, list):
        return out
    for entry in entries[:MAX_SERVERS]:
        if not isinstance(entry, dict):
            continue
        urls = entry.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list):
            continue
        urls = [u for u in urls if isinstance(u, str) and u.split(":", 1)[0] in
                ("stun", "turn", "turns")]
        if not urls:
            continue
        username, credential = entry.get("username"), entry.get("credential")
        out.append(
            RTCIceServer(
                urls=urls,
                username=username if isinstance(username, str) else None,
                credential=credential if isinstance(credential, str) else None,
            )
        )
    return out
