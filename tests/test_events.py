"""The client's events: each kind's `to_json` is the NDJSON object `--json` has always printed.

`DOCUMENTED` holds one or more instances of every kind beside the exact object (keys in
order) that the dict-building code before p2pcli/events.py emitted for it; adding a kind
without an entry here fails `test_every_kind_has_a_documented_example`.
"""

from __future__ import annotations

import dataclasses
import re

import orjson
import pytest

from p2pcli import events as ev
from p2pcli.events import Event


def all_kinds() -> list[type[Event]]:
    """The client's kinds: those defined in p2pcli/events.py (the signaling server's log
    events subclass `Event` too, in p2pcli/signaling/log.py, and have their own tests)."""
    found, todo = [], list(Event.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls.__module__ == ev.__name__:
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.kind)


DOCUMENTED: list[tuple[Event, dict]] = [
    (ev.SignalingConnected(url="http://s:8080", peer="sid1"),
     {"event": "signaling-connected", "url": "http://s:8080", "peer": "sid1"}),
    (ev.Announced(via="tracker", url="ws://t:8000"),
     {"event": "announced", "via": "tracker", "url": "ws://t:8000"}),
    (ev.IceConfig(servers=[["stun:a:3478"], "turn:b"]),
     {"event": "ice-config", "servers": [["stun:a:3478"], "turn:b"]}),
    (ev.Warning(message="dropped peer x: slow"),
     {"event": "warning", "message": "dropped peer x: slow"}),
    (ev.PeerJoined(peer="p", connection="relay"),
     {"event": "peer-joined", "peer": "p", "connection": "relay"}),
    (ev.PeerJoined(peer="p", connection="srflx", pair="host 10.0.0.2:5 -> srflx 1.2.3.4:6"),
     {"event": "peer-joined", "peer": "p", "connection": "srflx",
      "pair": "host 10.0.0.2:5 -> srflx 1.2.3.4:6"}),
    (ev.PeerRefused(peer="p", reason="busy: full"),
     {"event": "peer-refused", "peer": "p", "reason": "busy: full"}),
    (ev.PeerLeft(peer="p", received=10, sent=20),
     {"event": "peer-left", "peer": "p", "received": 10, "sent": 20}),
    (ev.PeerLeft(peer="p", received=10, sent=20, reason="stalled"),
     {"event": "peer-left", "peer": "p", "received": 10, "sent": 20, "reason": "stalled"}),
    (ev.Manifest(peer="p", name="a.mp4", size=5, piece_size=4, pieces=2),
     {"event": "manifest", "peer": "p", "name": "a.mp4", "size": 5, "piece_size": 4,
      "pieces": 2}),
    (ev.ManifestRejected(peer="p", reason="hash mismatch"),
     {"event": "manifest-rejected", "peer": "p", "reason": "hash mismatch"}),
    (ev.PieceVerified(piece=3, peers=["a", "b"]),
     {"event": "piece-verified", "piece": 3, "peers": ["a", "b"]}),
    (ev.PieceRejected(piece=3, peers=["a"]),
     {"event": "piece-rejected", "piece": 3, "peers": ["a"]}),
    # Before the manifest: the swarm's four counters only.
    (ev.Progress(peers=1, received=2, rate=3, sent=4),
     {"event": "progress", "peers": 1, "received": 2, "rate": 3, "sent": 4}),
    # fetch to a pipe, manifest known.
    (ev.Progress(peers=1, received=2, rate=3, sent=4, size=9, have=8, pieces=3, verified=2,
                 written=1, hashed=7),
     {"event": "progress", "peers": 1, "received": 2, "rate": 3, "sent": 4, "size": 9,
      "have": 8, "pieces": 3, "verified": 2, "written": 1, "hashed": 7}),
    # fetch to a file: `hashed` without `written`.
    (ev.Progress(peers=1, received=2, rate=3, sent=4, size=9, have=8, pieces=3, verified=2,
                 hashed=0),
     {"event": "progress", "peers": 1, "received": 2, "rate": 3, "sent": 4, "size": 9,
      "have": 8, "pieces": 3, "verified": 2, "hashed": 0}),
    # stream with mpv reporting its position (a falsy `paused` stays).
    (ev.Progress(peers=1, received=2, rate=3, sent=4, size=9, have=8, pieces=3, verified=2,
                 served=5, buffer_ahead=6, play_pos=0, paused=False),
     {"event": "progress", "peers": 1, "received": 2, "rate": 3, "sent": 4, "size": 9,
      "have": 8, "pieces": 3, "verified": 2, "served": 5, "buffer_ahead": 6, "play_pos": 0,
      "paused": False}),
    (ev.Resume(pieces=4, path="/d/a.mp4.part"),
     {"event": "resume", "pieces": 4, "path": "/d/a.mp4.part"}),
    (ev.Done(name="a", size=5, path="-", seconds=1.5, received=5, peers={"p": 5},
             connections={"p": "host"}, sent=0),
     {"event": "done", "name": "a", "size": 5, "path": "-", "seconds": 1.5, "received": 5,
      "peers": {"p": 5}, "connections": {"p": "host"}, "sent": 0}),
    (ev.Seeding(hash="abc"), {"event": "seeding", "hash": "abc"}),
    (ev.Seeding(hash="abc", link="p2p://abc", command="p2p fetch 'p2p://abc'",
                watch="http://s/watch#abc"),
     {"event": "seeding", "hash": "abc", "link": "p2p://abc",
      "command": "p2p fetch 'p2p://abc'", "watch": "http://s/watch#abc"}),
    (ev.ReaderGone(written_pieces=7), {"event": "reader-gone", "written_pieces": 7}),
    (ev.Serving(url="http://127.0.0.1:1/s/a", name="a", size=5),
     {"event": "serving", "url": "http://127.0.0.1:1/s/a", "name": "a", "size": 5}),
    (ev.Http(method="GET", status=206, range=[0, 5], verified=0),
     {"event": "http", "method": "GET", "status": 206, "range": [0, 5], "verified": 0}),
    (ev.Http(method="GET", status=403, error="wrong secret"),
     {"event": "http", "method": "GET", "status": 403, "error": "wrong secret"}),
    (ev.FirstByte(seconds=0.25), {"event": "first-byte", "seconds": 0.25}),
    (ev.PlayerStarted(player="mpv", pid=42),
     {"event": "player-started", "player": "mpv", "pid": 42}),
    (ev.PlayerExited(code=0), {"event": "player-exited", "code": 0}),
    (ev.StreamEnded(served=5), {"event": "stream-ended", "served": 5}),
    (ev.Hashed(name="a", size=5, pieces=2, piece_size=4, hash="abc", seconds=0.1),
     {"event": "hashed", "name": "a", "size": 5, "pieces": 2, "piece_size": 4, "hash": "abc",
      "seconds": 0.1}),
    (ev.SignalServer(url="http://10.0.0.1:8080", port=8080),
     {"event": "signal-server", "url": "http://10.0.0.1:8080", "port": 8080}),
    (ev.LanAnnounced(service="p2p-ab-01._p2p-share._tcp.local.", port=8080,
                     addresses=["10.0.0.1"]),
     {"event": "lan-announced", "service": "p2p-ab-01._p2p-share._tcp.local.", "port": 8080,
      "addresses": ["10.0.0.1"]}),
    (ev.LanAnnounced(service="s", port=9000, addresses=["10.0.0.1"],
                     signal="http://10.0.0.2:9000"),
     {"event": "lan-announced", "service": "s", "port": 9000, "addresses": ["10.0.0.1"],
      "signal": "http://10.0.0.2:9000"}),
    (ev.LanSearched(seconds=1.5), {"event": "lan-searched", "seconds": 1.5}),
    (ev.LanSearched(seconds=0.2, url="http://10.0.0.1:8080", service="s"),
     {"event": "lan-searched", "seconds": 0.2, "url": "http://10.0.0.1:8080", "service": "s"}),
    (ev.Status(peers=2, sent=10, rate=5),
     {"event": "status", "peers": 2, "sent": 10, "rate": 5}),
    (ev.UploadLimit(rate=1000, seconds=2.5, granted={"p2p": 900, "bittorrent": 1100}),
     {"event": "upload-limit", "rate": 1000, "seconds": 2.5,
      "granted": {"p2p": 900, "bittorrent": 1100}}),
    (ev.Check(check="signaling", status="fail", message="down", urls=["http://s"]),
     {"event": "check", "check": "signaling", "status": "fail", "message": "down",
      "urls": ["http://s"]}),
    (ev.Check(check="ice-config", status="warn", message="none", servers=[]),
     {"event": "check", "check": "ice-config", "status": "warn", "message": "none",
      "servers": []}),
    (ev.Check(check="turn", status="ok", message="m", url="turn:t", problem="x",
              address="1.2.3.4:5"),
     {"event": "check", "check": "turn", "status": "ok", "message": "m", "url": "turn:t",
      "problem": "x", "address": "1.2.3.4:5"}),
    (ev.Check(check="connection", status="ok", message="m", connection="relay",
              policy="relay"),
     {"event": "check", "check": "connection", "status": "ok", "message": "m",
      "connection": "relay", "policy": "relay"}),
    (ev.Doctor(ok=False, failed=["turn"]), {"event": "doctor", "ok": False, "failed": ["turn"]}),
    (ev.Info(hash="ab" * 32, name="photos", size=5, piece_size=16384, pieces=1, version=2,
             files=[{"index": 0, "path": "a/b.jpg", "size": 5}], folders=["empty"], peers=2,
             seeders=1),
     {"event": "info", "hash": "ab" * 32, "name": "photos", "size": 5, "piece_size": 16384,
      "pieces": 1, "version": 2, "files": [{"index": 0, "path": "a/b.jpg", "size": 5}],
      "folders": ["empty"], "peers": 2, "seeders": 1}),
]


@pytest.mark.parametrize(("event", "expected"), DOCUMENTED,
                         ids=[f"{e.kind}-{i}" for i, (e, _) in enumerate(DOCUMENTED)])
def test_to_json_is_the_documented_object(event: Event, expected: dict) -> None:
    got = event.to_json()
    # Key order is part of the NDJSON users have seen: compare items, not just dicts.
    assert list(got.items()) == list(expected.items())
    assert orjson.dumps(got) == orjson.dumps(expected)


def test_every_kind_has_a_documented_example() -> None:
    import p2pcli.signaling.log  # noqa: F401 - Event subclasses elsewhere are not client kinds

    assert {type(e) for e, _ in DOCUMENTED} == set(all_kinds())


def test_optional_keys_are_left_out_only_while_none() -> None:
    # A falsy value is data, not absence: a first piece at 0, an empty reason, no bytes yet.
    assert ev.Http(method="HEAD", status=200, range=[0, 0], verified=0).to_json()["verified"] == 0
    assert ev.PeerLeft(peer="p", received=0, sent=0, reason="").to_json()["reason"] == ""
    assert "reason" not in ev.PeerLeft(peer="p", received=0, sent=0).to_json()


def test_names_and_kinds() -> None:
    kinds = [cls.kind for cls in all_kinds()]
    assert len(kinds) == len(set(kinds)), "two classes share a kind"
    for cls in all_kinds():
        # "peer-joined" -> PeerJoined, so a kind in the NDJSON finds its class by name.
        assert cls.__name__ == "".join(w.capitalize() for w in cls.kind.split("-")), cls
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", cls.kind), cls.kind


def test_every_field_is_documented() -> None:
    # As in wire.py: a string literal right under each field says what it holds.
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(ev))
    documented: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names = documented.setdefault(node.name, set())
            for a, b in zip(node.body, node.body[1:], strict=False):
                if (isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name)
                        and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant)
                        and isinstance(b.value.value, str)):
                    names.add(a.target.id)
    for cls in all_kinds():
        missing = {f.name for f in dataclasses.fields(cls)} - documented[cls.__name__]
        assert not missing, f"{cls.__name__}: no docstring for {sorted(missing)}"


def test_events_are_frozen_and_keyword_only() -> None:
    e = ev.PeerJoined(peer="p", connection="host")
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.peer = "q"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ev.PeerJoined("p", "host")  # type: ignore[misc]
    # A missing required field is a TypeError at the emit site, not a KeyError in a renderer.
    with pytest.raises(TypeError):
        ev.PeerJoined(peer="p")  # type: ignore[call-arg]


# -- how cli/output.py renders them ---------------------------------------------------------


def test_every_kind_is_rendered_or_deliberately_silent() -> None:
    from p2p_cli.doctor import DoctorReporter
    from p2p_cli.output import SILENT, Reporter

    rendered = set(Reporter().handlers()) | set(DoctorReporter().handlers())
    forgotten = set(all_kinds()) - rendered - SILENT
    assert not forgotten, (
        f"no human rendering for {sorted(c.__name__ for c in forgotten)}: add a handler in "
        "cli/output.py (or the command's Reporter), or list the kind in output.SILENT"
    )
    assert not rendered & SILENT, "a kind is both rendered and listed as silent"


def test_json_mode_prints_to_json_after_a_timestamp(capfdbinary) -> None:
    from p2p_cli.output import Reporter

    Reporter(json=True)(ev.PeerLeft(peer="p", received=1, sent=2))
    line = capfdbinary.readouterr().err
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    obj = orjson.loads(line)
    assert list(obj) == ["t", "event", "peer", "received", "sent"]
    assert obj["event"] == "peer-left"


def test_human_mode_dispatches_by_class() -> None:
    import io

    from rich.console import Console

    from p2p_cli.output import Reporter

    r = Reporter()
    r.console = Console(file=io.StringIO(), width=200)
    r(ev.PeerJoined(peer="p1", connection="relay"))
    r(ev.PieceVerified(piece=0, peers=["p1"]))  # silent
    r(ev.Warning(message="[b]x"))  # a field is text, never markup
    out = r.console.file.getvalue()  # type: ignore[attr-defined]
    assert out == "peer p1 connected (relayed through TURN)\nwarning: [b]x\n"
