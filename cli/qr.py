"""QR codes of a share's link and watch URL, for a phone's camera (`seed --qr`).

segno makes and draws them (a maintained library: nothing here encodes a QR code). A full
QR code, never a Micro QR code (segno picks one for short data; phone cameras read few).
Drawn with half blocks, two modules a character, so a 200-character link fits a terminal:
light modules are printed as blocks, for the usual dark background.
"""

from __future__ import annotations

import io

BORDER = 2
"Quiet zone, in modules: readers want some; 2 reads reliably on a dark terminal."


def qr_text(data: str) -> str:
    import segno  # only with --qr: `p2p --help` and a plain seed do not load it

    buf = io.StringIO()
    segno.make_qr(data, error="l").terminal(out=buf, compact=True, border=BORDER)
    return buf.getvalue().rstrip("\n")
