"""Start-up: a command imports what it needs, when it needs it (issue 14).

Python start-up and imports were most of `p2p stream`'s time to first frame. These checks are
structural (which modules a fresh interpreter has loaded), never timings: `p2p --help` and
`--version` load no WebRTC, Socket.IO or HTTP stack, and `p2p stream` publishes its URL (so
the player starts) before aiortc is loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

#: Loaded by seed, fetch and stream once they connect; never by --help or --version.
HEAVY = ("aiortc", "aioice", "socketio", "engineio", "aiohttp", "av", "uvloop", "redis",
         "zeroconf", "spake2")


def _modules_after(code: str) -> set[str]:
    """Top-level packages a fresh interpreter holds after running `code`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport json, sys\n"
         "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["stream", "--help"],
                                  ["seed", "--help"], ["fetch", "--help"],
                                  ["serve-signal", "--help"], ["doctor", "--help"],
                                  ["send", "--help"], ["receive", "--help"]])
def test_help_and_version_load_no_network_stack(argv: list[str]):
    code = (
        "import sys\n"
        "from p2p_cli.main import app\n"
        f"sys.argv = ['p2p', *{argv!r}]\n"
        "try:\n"
        "    app(standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
    )
    loaded = _modules_after(code)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_swarm_config_and_link_parsing_load_no_network_stack():
    # What the stream command does before it publishes its URL.
    loaded = _modules_after(
        "from p2p_cli.common import target_config\n"
        "target_config('p2p://' + '0' * 64 + '?name=a.mp4', None, None, None, command='stream')\n"
        "import p2pcli.stream\n"
    )
    assert not loaded & {"aiortc", "aioice", "socketio", "engineio", "av"}, loaded


def test_stream_publishes_its_url_before_loading_aiortc_or_aiohttp():
    # The `serving` event (the URL the player opens) comes before the swarm's modules and
    # the HTTP server's load: the player starts up while aiohttp and aiortc are imported
    # and peers are found; a bare socket listens meanwhile.
    code = (
        "import asyncio, sys\n"
        "from p2pcli.link import parse_target\n"
        "from p2pcli.stream import StreamOptions, stream\n"
        "from p2pcli.swarm import SwarmConfig\n"
        "seen = []\n"
        "class Stop(Exception):\n"
        "    pass\n"
        "def emit(ev):\n"
        "    if ev.kind == 'serving':\n"
        "        seen.append((ev.url, {'aiortc', 'aiohttp'} & set(sys.modules)))\n"
        "def before_swarm():\n"
        "    raise Stop\n"
        "t = parse_target('p2p://' + '0' * 64 + '?signal=http%3A%2F%2F127.0.0.1%3A9&name=a.mp4')\n"
        "opts = StreamOptions(player='none', before_swarm=before_swarm)\n"
        "try:\n"
        "    asyncio.run(stream(t, SwarmConfig(signal_urls=[]), opts, emit))\n"
        "except Stop:\n"
        "    pass\n"
        "assert len(seen) == 1 and seen[0][0].endswith('/a.mp4') and not seen[0][1], seen\n"
    )
    loaded = _modules_after(code)
    assert "aiortc" not in loaded


def test_a_signaling_client_loads_socketio_without_redis():
    # python-socketio's package imports redis for its pub/sub managers (~40 ms of start-up);
    # only the clustered server uses them.
    loaded = _modules_after(
        "from p2pcli import patches\n"
        "patches.load_socketio_client()\n"
        "import socketio\n"
        "assert socketio.AsyncClient\n"
        "from p2pcli.signaling.client import SignalingClient\n"
    )
    assert "socketio" in loaded and "redis" not in loaded, loaded


def test_loading_the_socketio_client_leaves_redis_importable():
    # A process that imported redis first (the clustered server) keeps socketio's Redis
    # managers: the loader does nothing then; and redis stays importable afterwards.
    loaded = _modules_after(
        "import redis\n"
        "from p2pcli import patches\n"
        "patches.load_socketio_client()\n"
        "import socketio.async_redis_manager as m\n"
        "assert m.aioredis is not None\n"
    )
    assert "redis" in loaded
    loaded = _modules_after(
        "from p2pcli import patches\n"
        "patches.load_socketio_client()\n"
        "import redis\n"
    )
    assert "redis" in loaded


def test_the_cli_repeats_the_embedded_signal_port_of_the_core():
    from p2p_cli import seed as cli_seed
    from p2pcli import seed as core_seed

    assert cli_seed.DEFAULT_EMBEDDED_PORT == core_seed.DEFAULT_EMBEDDED_PORT
