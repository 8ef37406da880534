"""A busy --port moves seed's embedded signaling server to the next free port, and says so
(issue 16, rough edge 5): it once moved silently, and a link to the port asked for was dead."""

from __future__ import annotations

import socket

import pytest
from conftest import LOOPBACK, Procs, free_port, make_file


@pytest.mark.parametrize("mode", ["human", "json"])
def test_seed_says_which_port_it_took_when_the_one_asked_for_is_busy(procs: Procs,
                                                                    mode: str) -> None:
    src = make_file(procs.workdir / "a.bin", 1000)
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", port))
        busy.listen()
        p = procs.p2p("seed", str(src), *LOOPBACK, "--no-lan", "--port", str(port),
                      *(["--json"] if mode == "json" else []), name=f"seed-{mode}")
        if mode == "json":
            ev = p.wait_for(lambda p: next((e for e in p.events()
                                            if e.get("event") == "signal-server"), None),
                            what="signal-server")
            assert ev["busy"] == port and ev["port"] != port
            took = ev["port"]
        else:
            line = p.wait_for(lambda p: next((x for x in p.stderr.splitlines()
                                              if "signaling server running" in x), None),
                              what="the server's line")
            took = int(line.split(" was taken")[0].rsplit(" ", 1)[1])
            assert f"port {port} was busy, so {took} was taken" in line
        p.wait_for(lambda p: p.stdout.strip(), what="the link")
        assert f"%3A{took}&" in p.stdout and f"%3A{port}&" not in p.stdout  # the URL, quoted
        p.kill()
