"""serve-signal prints the URLs other machines can use, as seed puts its LAN address in the
link (issue 16, rough edge 7): it once printed only http://127.0.0.1:PORT."""

from __future__ import annotations

import pytest
from conftest import Procs, free_port

from p2pcli.reach import reachable_urls

ADDRS = ["127.0.0.1", "192.168.1.20", "::1", "fe80::1%eth0", "2001:db8::5", "10.0.0.7",
         "169.254.3.3"]


def test_a_wildcard_bind_is_every_lan_address_of_its_family() -> None:
    assert reachable_urls("0.0.0.0", 8080, ADDRS) == ["http://192.168.1.20:8080",
                                                      "http://10.0.0.7:8080"]
    assert reachable_urls("::", 1, ADDRS, tls=True) == [
        "https://192.168.1.20:1", "https://10.0.0.7:1", "https://[2001:db8::5]:1"]


def test_a_named_address_is_itself_and_loopback_reaches_nobody_else() -> None:
    assert reachable_urls("10.0.0.7", 9, ADDRS) == ["http://10.0.0.7:9"]
    assert reachable_urls("signal.example.org", 9, ADDRS) == ["http://signal.example.org:9"]
    assert reachable_urls("127.0.0.1", 9, ADDRS) == [] == reachable_urls("::1", 9, ADDRS)
    assert reachable_urls("0.0.0.0", 9, ["127.0.0.1"]) == []


@pytest.mark.parametrize("mode", ["human", "json"])
@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_serve_signal_says_where_others_reach_it(procs: Procs, mode: str, host: str) -> None:
    from p2pcli.reach import local_addresses

    port = free_port()
    want = reachable_urls(host, port, local_addresses())
    p = procs.p2p("serve-signal", "--host", host, "--port", str(port),
                  *(["--json"] if mode == "json" else []), name=f"signal-{mode}-{host}")
    if mode == "json":
        ev = p.wait_for(lambda p: next((e for e in p.events() if e["event"] == "listening"),
                                       None), what="listening")
        assert ev["reachable"] == want
    else:
        key = "other machines reach it at" if want else "only this machine can reach it"
        line = p.wait_for(lambda p: next((x for x in p.stderr.splitlines() if key in x), None),
                          what=key)
        assert all(u in line for u in want)
    p.kill()
