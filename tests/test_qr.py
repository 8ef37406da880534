"""`seed --qr` draws QR codes of the link and of the watch URL (issue 16, conveniences).

The drawing is read back into modules and compared with the matrix segno itself makes for
the same text: what is printed is that QR code, whole, quiet zone included."""

from __future__ import annotations

import json

import pytest
import segno
from conftest import LOOPBACK, Procs, make_file

from p2p_cli.qr import BORDER, qr_text

#: A half-block character: (upper module light, lower module light). Light is drawn.
HALVES = {"█": (1, 1), " ": (0, 0), "▀": (1, 0), "▄": (0, 1)}


def modules(text: str) -> list[list[int]]:
    """The drawing back as rows of modules, 1 dark (segno's convention)."""
    rows: list[list[int]] = []
    for line in text.splitlines():
        upper, lower = zip(*(HALVES[c] for c in line), strict=True)
        rows += [[1 - v for v in upper], [1 - v for v in lower]]
    return rows


def expected(data: str) -> list[list[int]]:
    q = segno.make_qr(data, error="l")
    assert not q.is_micro  # phone cameras read full QR codes
    width = len(q.matrix[0]) + 2 * BORDER
    rows = ([[0] * width] * BORDER + [[0] * BORDER + list(r) + [0] * BORDER for r in q.matrix]
            + [[0] * width] * BORDER)
    return rows


@pytest.mark.parametrize("data", [
    "p2p://" + "ab" * 32 + "?signal=http%3A%2F%2F192.168.1.20%3A8080&name=movie.mp4",
    "http://192.168.1.20:8080/watch/" + "ab" * 32,
    "x",  # short: segno would choose a Micro QR code unless asked not to
])
def test_the_drawing_is_segnos_qr_code(data: str) -> None:
    want = expected(data)
    drawn = modules(qr_text(data))
    # Half blocks draw rows in pairs: an odd count leaves half a line of background.
    assert len(drawn) == len(want) + len(want) % 2 and drawn[:len(want)] == want


@pytest.mark.parametrize("mode", ["human", "json"])
def test_seed_draws_both_codes_in_human_mode_only(procs: Procs, mode: str) -> None:
    src = make_file(procs.workdir / "a.bin", 1000)
    p = procs.p2p("seed", str(src), *LOOPBACK, "--no-lan", "--port", "0", "--qr",
                  *(["--json"] if mode == "json" else []), name=f"seed-{mode}")
    if mode == "json":
        ev = p.wait_for(lambda p: next((e for e in p.events() if e["event"] == "seeding"), None),
                        what="seeding")
        p.kill()
        for line in p.stderr.splitlines():  # still NDJSON only, no drawing in between
            if not line.startswith("p2p: "):
                json.loads(line)
        assert "▀" not in p.stderr and ev["link"]
        return
    p.wait_for(lambda p: "Serving" in p.stderr, what="serving")
    p.kill()
    link = p.stdout.strip()
    watch = next(w for w in p.stderr.split() if "/watch/" in w)
    assert qr_text(link) in p.stderr and qr_text(watch) in p.stderr
    assert p.stderr.index("QR code of the link") < p.stderr.index("QR code of the watch page")
