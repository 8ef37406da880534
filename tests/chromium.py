"""How the tests and benchmarks/browser.py start Debian's Chromium (never `playwright install`).

Loopback candidates need the last flag plus the camera permission granted per origin by
the caller; mDNS names would hide 127.0.0.1 from aiortc (and send multicast).
"""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--allow-loopback-in-peer-connection",
]
