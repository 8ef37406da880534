"""README's quickstart shows what the commands print (issue 16's acceptance): the lines the
renderer writes are rendered here from the events of that run, and must stand in README
word for word; a change to the wording fails here until README follows."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_human_mode import render

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
QUICKSTART = README[README.index("## Quickstart"):README.index("## Commands")]

#: The transcript's events: (kind, fields). Its peer ids' short names are their first six
#: characters, as the renderer names a first peer.
EVENTS = [
    ("hashed", {"name": "movie.mp4", "size": 200_000_000, "pieces": 763,
                "piece_size": 262_144, "hash": "6150af47" + "0" * 56, "seconds": 0.1}),
    ("signal_server", {"url": "http://127.0.0.1:8080", "port": 8080}),
    ("signaling_connected", {"url": "http://127.0.0.1:8080", "peer": "x" * 20}),
    ("peer_joined", {"peer": "8gWpE4" + "a" * 14, "connection": "host",
                     "pair": "host 127.0.0.1:8080 -> host 127.0.0.1:55273"}),
    ("manifest", {"peer": "p", "name": "movie.mp4", "size": 200_000_000,
                  "piece_size": 262_144, "pieces": 763}),
    ("done", {"name": "movie.mp4", "size": 200_000_000, "path": "/tmp/qs/other/movie.mp4",
              "seconds": 1.9, "received": 200_000_000, "peers": {"p": 200_000_000},
              "connections": {"p": "host"}, "sent": 0}),
]


@pytest.mark.parametrize("kind, fields", EVENTS, ids=[k for k, _ in EVENTS])
def test_each_rendered_line_stands_in_the_quickstart(kind, fields, capsys):
    for line in render(fields, kind, capsys).splitlines():
        if line.strip() and not line.startswith(("hashing", "fetch ")):  # bars: drawn
            assert line.rstrip() in QUICKSTART, f"README's quickstart lacks: {line!r}"
