"""A malicious signaling server for tests (issue 18): our own server, except that it puts
another DTLS fingerprint in every SDP it relays, as a man in the middle would (its own
certificate's, so it could terminate DTLS with each side).

Run: python mitm_signal.py PORT [offer|answer|both] [signal|tracker]  (which SDPs it
rewrites, default both; in the Socket.IO relays (default) or in what its /announce
WebTorrent tracker forwards, where a code's messages travel inside the SDPs)
"""

from __future__ import annotations

import re
import sys

from p2pcli.signaling import core, tracker
from p2pcli.signaling.server import run_signal_server

#: The attacker's certificate fingerprint (any value but the peer's will do).
MITM = "sha-256 " + ":".join(["C0"] * 32)
_LINE = re.compile(r"^a=fingerprint:.*$", re.M)


def _swap(sdp: object) -> object:
    if isinstance(sdp, dict):
        return {**sdp, "sdp": _swap(sdp.get("sdp"))}
    if isinstance(sdp, str):
        return _LINE.sub("a=fingerprint:" + MITM, sdp)
    return sdp


def main() -> None:
    port = int(sys.argv[1])
    which = sys.argv[2] if len(sys.argv) > 2 else "both"
    events = {"offer", "answer"} if which == "both" else {which}
    if (sys.argv[3] if len(sys.argv) > 3 else "signal") == "tracker":
        parse_sdp = tracker.parse_sdp

        def rewriting_parse(value, kind):
            sdp = parse_sdp(value, kind)
            return _swap(sdp) if kind in events else sdp

        tracker.parse_sdp = rewriting_parse
        run_signal_server("127.0.0.1", port)
        return
    relay = core.SignalCore.relay

    def rewriting_relay(self, sender, event, data, now):
        if event in events and isinstance(data, dict):
            data = {k: (_swap(v) if k in ("offer", "answer", "sdp") else v)
                    for k, v in data.items()}
        return relay(self, sender, event, data, now)

    core.SignalCore.relay = rewriting_relay
    run_signal_server("127.0.0.1", port)


if __name__ == "__main__":
    main()
