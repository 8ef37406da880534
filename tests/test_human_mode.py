"""Every command, in words for people as well as in --json, and peer-chosen text printed as text.

- Each `on_*` handler of cli/output.py gets every string field replaced by markup, escape
  sequences and bidi marks: nothing raises, markup prints as typed, no raw control
  character reaches the terminal (sans-IO, fast).
- Real processes: seed, fetch to a file, fetch to a pipe, stream --player none,
  serve-signal and doctor, each in human mode and with --json, sharing a file whose name
  is rich markup: exit 0, no traceback, stdout holds only data, and the `done` event has
  one shape for fetch and stream.
- Real seed + fetch + stream in human mode for a set of markup-bearing names.
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import LOOPBACK, P2P, Proc, Procs, free_port, make_file, wait_port

from p2p_cli.doctor import DoctorReporter
from p2p_cli.output import visible
from p2pcli import events

# -- the renderer, without processes ---------------------------------------------------------

HOSTILE = [
    "[@a=(]clip.mkv",  # MarkupError in rich's parser
    "[b]x",  # renders bold, dropping the brackets
    "[/]",
    "[bold red]alert[/]",
    "x\\",
    "\\[b]y",
    "[link=https://example.org]click",
    ":cat: :smile:",  # rich emoji codes
    "\x1b[2J\x1b]0;pwned\x07",  # clear the screen, retitle the terminal
    "forged\u2028line",
    "gpj\u202eexe.jpg",
]

PEER = "Jm8a1k2LZQ1x"
#: One event per shape the renderer knows, as the core emits them.
SAMPLES: dict[str, list[dict[str, Any]]] = {
    "hashed": [{"name": "a.bin", "size": 5, "pieces": 1, "piece_size": 16384,
                "hash": "ab" * 32, "seconds": 0.1}],
    "signal_server": [{"url": "http://10.0.0.1:8080", "port": 8080},
                      {"url": "http://10.0.0.1:8081", "port": 8081, "busy": 8080}],
    "seeding": [
        {"hash": "ab" * 32, "link": "p2p://x", "command": "p2p fetch 'p2p://x'",
         "watch": "http://10.0.0.1:8080/watch/ab"},
        {"hash": "ab" * 32},
    ],
    "lan_announced": [
        {"service": "p2p-ab-0a1b2c._p2p-share._tcp.local.", "port": 8080,
         "addresses": ["10.0.0.1"]},
        {"service": "s", "port": 9000, "addresses": ["10.0.0.1", "10.0.0.2"],
         "signal": "http://10.0.0.5:9000"},
    ],
    "lan_searched": [{"seconds": 1.5},
                     {"seconds": 0.2, "url": "http://10.0.0.1:8080", "service": "s"}],
    "status": [{"peers": 1, "sent": 10, "rate": 5}],
    "signaling_connected": [{"url": "http://10.0.0.1:8080", "peer": PEER}],
    "announced": [{"via": "tracker", "url": "wss://t.example"},
                  {"via": "peerjs", "url": "wss://pj.example/"}],
    "peer_joined": [{"peer": PEER, "connection": "host"},
                    {"peer": "wt0:" + "ab" * 20, "connection": "srflx",
                     "pair": "host 10.0.0.1:5000 -> srflx 203.0.113.7:40000"}],
    "peer_left": [{"peer": PEER, "received": 5, "sent": 0}],
    "manifest": [{"peer": PEER, "name": "a.bin", "size": 5, "piece_size": 16384, "pieces": 1}],
    "resume": [{"pieces": 3, "path": "/tmp/a.bin.part"}],
    "progress": [{"peers": 1, "have": 3, "received": 3, "rate": 1, "sent": 0,
                  "buffer_ahead": 7}],
    "serving": [{"url": "http://127.0.0.1:9/x/a.bin", "name": "a.bin", "size": 5}],
    "player_started": [{"player": "mpv", "pid": 7}],
    "player_exited": [{"code": 0}],
    "warning": [{"message": "peer Jm8a said no"}],
    "manifest_rejected": [{"peer": PEER, "reason": "bad magic"}],
    "piece_rejected": [{"piece": 3, "peers": [PEER]}],
    "done": [{"name": "a.bin", "size": 5, "path": "/tmp/a.bin", "seconds": 1.5, "received": 5,
              "peers": {PEER: 5}, "connections": {PEER: "relay"}, "sent": 0},
             {"name": "a.bin", "size": 5, "path": "-", "seconds": 1.5, "received": 5,
              "peers": {PEER: 5}, "connections": {PEER: "host"}, "sent": 0}],
    "reader_gone": [{"written_pieces": 2}],
    "check": [{"check": "turn", "status": "fail", "message": "TURN server said 401"},
              {"check": "stun", "status": "ok", "message": "fine"}],
    "doctor": [{"ok": False, "failed": ["turn", "stun"]}, {"ok": True, "failed": []}],
}


def event_class(kind: str) -> type[events.Event]:
    """"peer_joined" -> events.PeerJoined (p2pcli/events.py names classes after kinds)."""
    return getattr(events, "".join(w.capitalize() for w in kind.split("_")))


def handlers() -> set[str]:
    return {n[3:] for n in dir(DoctorReporter) if n.startswith("on_")}


def test_every_handler_has_a_sample() -> None:
    # A new event rendered for people must be added to SAMPLES, and so to the tests below.
    assert handlers() == set(SAMPLES)


def render(ev: dict[str, Any], kind: str, capsys: pytest.CaptureFixture[str]) -> str:
    r = DoctorReporter()
    try:
        r(event_class(kind)(**ev))
    finally:
        r.close()
    out = capsys.readouterr()
    assert out.out == ""  # stdout is for data only
    return out.err


def variants() -> list[tuple[str, int, str]]:
    # Every string field but a check's status, our own word looked up in a table.
    return [(kind, i, key) for kind, evs in SAMPLES.items() for i, ev in enumerate(evs)
            for key, value in ev.items()
            if isinstance(value, str) and (kind, key) != ("check", "status")]


@pytest.mark.parametrize(("kind", "i", "key"), variants())
def test_peer_text_in_any_field_prints_as_text(
    kind: str, i: int, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = SAMPLES[kind][i]
    shown = "FIELDMARK" in render({**base, key: "FIELDMARK"}, kind, capsys)
    for text in HOSTILE:
        err = render({**base, key: text}, kind, capsys)
        if shown:
            assert visible(text) in err, (text, err)
        for raw in ("\x1b", "\x07", "\u2028", "\u202e"):
            assert raw not in err, (text, err)


def test_done_renders_for_every_command_shape(capsys: pytest.CaptureFixture[str]) -> None:
    for ev in SAMPLES["done"]:
        err = render(ev, "done", capsys)
        assert err.startswith("done: a.bin") and "verified in 1.5s from 1 peer" in err


# -- the real commands, human mode and --json -------------------------------------------------

NAME = "[@a=(]clip [b]x.bin"  # markup, and a valid name on every system
DONE_FIELDS = {"event", "name", "size", "path", "seconds", "received", "peers", "connections",
               "sent"}
COMMANDS = ["seed", "fetch-file", "fetch-pipe", "stream", "serve-signal", "doctor"]


def mode_args(mode: str) -> list[str]:
    return ["--json"] if mode == "json" else []


def check_stderr(err: str, mode: str) -> None:
    assert "Traceback" not in err, err[-3000:]
    if mode == "json":
        lines = err.splitlines()
        if lines and lines[-1].startswith("p2p: "):  # how a command ends on a signal
            lines.pop()
        for line in lines:
            assert isinstance(json.loads(line), dict), line


def source(tmp_path: Path, name: str = NAME, size: int = 300_000) -> Path:
    """The shared file, apart from the working directory where downloads land."""
    d = tmp_path / "src"
    d.mkdir(exist_ok=True)
    return make_file(d / name, size)


def seed(procs: Procs, src: Path, signal_url: str, mode: str = "json",
         name: str = "seed") -> tuple[Proc, str]:
    p = procs.p2p("seed", str(src), *LOOPBACK, "--signal", signal_url, *mode_args(mode),
                  name=name)
    link = p.wait_for(lambda p: p.stdout.strip().splitlines()[0] if p.stdout.strip() else None,
                      60, "the link")
    return p, link


def stream(procs: Procs, link: str, mode: str, name: str = "stream") -> tuple[Proc, str]:
    s = procs.p2p("stream", link, *LOOPBACK, "--player", "none", *mode_args(mode), name=name)
    url = s.wait_for(lambda p: p.stdout.strip(), 60, "the URL")
    return s, url


def done_seen(p: Proc, mode: str) -> bool:
    if mode == "json":
        return any(e["event"] == "done" for e in p.events())
    return any(line.startswith("done: ") for line in p.stderr.splitlines())


def done_event(p: Proc) -> dict[str, Any]:
    return next(e for e in p.events() if e["event"] == "done")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["human", "json"])
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_in_every_mode(
    procs: Procs, signal_url: str, tmp_path: Path, command: str, mode: str
) -> None:
    src = source(tmp_path)
    data = src.read_bytes()
    if command == "serve-signal":
        port = free_port()
        p = procs.p2p("serve-signal", "--host", "127.0.0.1", "--port", str(port),
                      *mode_args(mode), name="server")
        wait_port(port)
        p.signal(signal.SIGTERM)
        assert p.wait(30) == 0, p.stderr[-3000:]
        assert p.stdout == ""
        check_stderr(p.stderr, mode)
        return
    if command == "doctor":
        p = procs.p2p("doctor", "--signal", signal_url, "--timeout", "5", *mode_args(mode),
                      name="doctor")
        assert p.wait(120) == 0, p.stderr[-3000:]
        assert p.stdout == ""
        check_stderr(p.stderr, mode)
        return
    if command == "seed":
        s, link = seed(procs, src, signal_url, mode)
        f = procs.fetch(link, "-o", "out.bin")
        assert f.wait(120) == 0, f.stderr[-3000:]
        s.signal(signal.SIGINT)  # how seeding ends
        assert s.wait(30) == 0, s.stderr[-3000:]
        assert s.stdout == link + "\n"  # the link, and nothing else
        check_stderr(s.stderr, mode)
        assert NAME in s.stderr
        return
    _, link = seed(procs, src, signal_url)
    if command == "fetch-file":
        f = procs.p2p("fetch", link, *LOOPBACK, "-o", "out.bin", *mode_args(mode), name="fetch")
        assert f.wait(120) == 0, f.stderr[-3000:]
        assert f.stdout == ""
        assert (tmp_path / "out.bin").read_bytes() == data
        err = f.stderr
        events = f.events()
    elif command == "fetch-pipe":
        r = subprocess.run([P2P, "fetch", link, *LOOPBACK, *mode_args(mode)], cwd=tmp_path,
                           env=procs.env, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=120)
        err = r.stderr.decode(errors="replace")
        assert r.returncode == 0, err[-3000:]
        assert r.stdout == data  # only the content
        events = [json.loads(line) for line in err.splitlines()] if mode == "json" else []
    else:  # stream
        s, url = stream(procs, link, mode)
        assert url.startswith("http://127.0.0.1:") and "\n" not in url
        with urllib.request.urlopen(url, timeout=60) as resp:
            assert resp.read() == data
        s.wait_for(lambda p: done_seen(p, mode), 60, "done")
        # With no player, Ctrl-C is how a stream ends: after `done`, a normal stop (exit 0).
        s.signal(signal.SIGINT)
        assert s.wait(30) == 0, s.stderr[-3000:]
        assert s.stdout == url + "\n"
        assert (tmp_path / NAME).read_bytes() == data
        err = s.stderr
        events = s.events()
    check_stderr(err, mode)
    if mode == "json":
        assert set(next(e for e in events if e["event"] == "done")) - {"t"} == DONE_FIELDS
    else:
        assert NAME in err
        assert any(line.startswith(f"done: {NAME}") for line in err.splitlines()), err[-3000:]


MARKUP_NAMES = ["[@a=(]clip.mkv", "[b]x", "[bold red]alert", "x[link=https]y.txt",
                "[i]a[dim]b", "a]b[c"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", MARKUP_NAMES)
def test_markup_in_a_file_name_prints_as_typed(
    procs: Procs, signal_url: str, tmp_path: Path, name: str
) -> None:
    src = source(tmp_path, name, 100_000)
    s, link = seed(procs, src, signal_url, "human")
    f = procs.p2p("fetch", link, *LOOPBACK, "-o", "out.bin", name="fetch")
    st, url = stream(procs, link, "human")
    assert f.wait(120) == 0, f.stderr[-3000:]
    with urllib.request.urlopen(url, timeout=60) as resp:
        assert resp.read() == src.read_bytes()
    st.wait_for(lambda p: done_seen(p, "human"), 60, "done")
    st.signal(signal.SIGINT)
    assert st.wait(30) == 0, st.stderr[-3000:]
    s.signal(signal.SIGINT)
    assert s.wait(30) == 0, s.stderr[-3000:]
    for p in (s, f, st):
        assert "Traceback" not in p.stderr, p.stderr[-3000:]
        assert name in p.stderr, (p.name, p.stderr[-3000:])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("text", ["[/]", "[@a=(]x", "[b]bold", "\x1b]0;pwned\x07"],
                         ids=ascii)
def test_client_text_in_the_servers_log_prints_as_text(procs: Procs, text: str) -> None:
    # Engine.IO logs a bad session id as given: any client chooses this log line's text.
    port = free_port()
    p = procs.p2p("serve-signal", "--host", "127.0.0.1", "--port", str(port), name="server")
    wait_port(port)
    url = (f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling&sid="
           + urllib.parse.quote(text, safe=""))
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=30)
    assert e.value.code == 400  # refused, not 500
    p.wait_for(lambda p: "Invalid session" in p.stderr, 30, "the warning")
    p.signal(signal.SIGTERM)
    assert p.wait(30) == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert f"Invalid session {visible(text)}" in p.stderr
    assert "\x1b" not in p.stderr
