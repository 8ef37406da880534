"""LAN discovery's rules (p2pcli/lan.py), without sockets: what a seeder announces, and
which answers a fetcher dials. Anyone on the LAN can answer an mDNS query, so every answer
that does not name our hash and a private address on an unprivileged port is skipped."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2p_cli.common import bare
from p2pcli import lan
from p2pcli.link import parse_target

CID = "ab" * 32
NAME = f"{lan.instance_name(CID, '0a1b2c')}.{lan.SERVICE_TYPE}"


def answer(port: int | None = 8080, addresses: tuple[str, ...] = ("192.168.1.20",),
           drop: str = "", **txt: str | None) -> lan.Answer:
    """A well-formed answer, with TXT keys changed by `txt` or removed by `drop`."""
    fields = {"v": "1", "h": CID, **txt}
    raw = {k.encode(): (v.encode() if v is not None else None)
           for k, v in fields.items() if k != drop}
    return lan.Answer(name=NAME, port=port, addresses=addresses, txt=raw)


def test_instance_name_carries_the_hash_prefix_and_fits_a_dns_label():
    label = lan.instance_name(CID, "0a1b2c")
    assert label == "p2p-abababababababab-0a1b2c"
    assert len(label) <= 63
    assert lan.matches_instance(NAME, CID)
    assert lan.matches_instance(NAME.upper(), CID)
    assert not lan.matches_instance(NAME, "cd" * 32)


def test_txt_record_names_the_hash_and_only_a_foreign_server():
    assert lan.txt_record(CID) == {"v": "1", "h": CID}
    assert lan.txt_record(CID, "http://10.0.0.5:9000") == {
        "v": "1", "h": CID, "s": "http://10.0.0.5:9000"}


def test_an_embedded_server_answer_is_dialed_at_its_address_and_srv_port():
    got = lan.accept(answer(), CID)
    assert got == lan.Found(NAME, "http://192.168.1.20:8080")


def test_a_server_of_its_own_is_dialed_at_the_txt_url():
    got = lan.accept(answer(s="http://10.1.2.3:9000/"), CID)
    assert got is not None and got.signal_url == "http://10.1.2.3:9000/"


def test_an_address_on_our_own_network_comes_first():
    a = answer(addresses=("172.17.0.1", "192.168.1.20", "10.9.9.9"))
    nets = [ipaddress.ip_network("192.168.1.0/24")]
    assert lan.accept(a, CID, nets).signal_url == "http://192.168.1.20:8080"
    assert lan.accept(a, CID).signal_url == "http://172.17.0.1:8080"


@pytest.mark.parametrize("addr", ["10.0.0.1", "172.16.5.5", "192.168.0.2", "100.64.1.1",
                                  "169.254.3.4", "fd12:3456::1"])
def test_private_addresses_are_accepted(addr: str):
    got = lan.accept(answer(addresses=(addr,)), CID)
    host = f"[{addr}]" if ":" in addr else addr
    assert got is not None and got.signal_url == f"http://{host}:8080"


@pytest.mark.parametrize("addr", [
    "8.8.8.8",  # public: would tell a stranger what we fetch
    "127.0.0.1", "::1",  # this machine's own services
    "0.0.0.0", "255.255.255.255", "224.0.0.251",  # not a host
    "240.0.0.1",  # reserved
    "2001:db8::1", "2a00:1450::1",  # global IPv6
    "fe80::1",  # link-local IPv6: no interface in the answer to dial it on
    "fe80::1%eth0", "example.org", "", "10.0.0.1/8",
])
def test_non_lan_or_absurd_addresses_are_ignored(addr: str):
    assert lan.accept(answer(addresses=(addr,)), CID) is None


def test_one_good_address_among_hostile_ones_is_the_one_dialed():
    got = lan.accept(answer(addresses=("8.8.8.8", "127.0.0.1", "10.0.0.7")), CID)
    assert got is not None and got.signal_url == "http://10.0.0.7:8080"


@pytest.mark.parametrize("port", [None, 0, 1, 22, 80, 443, 1023, 65536, -1, 10**6])
def test_absurd_or_privileged_ports_are_ignored(port: int | None):
    assert lan.accept(answer(port=port), CID) is None


@pytest.mark.parametrize("port", [1024, 8080, 65535])
def test_unprivileged_ports_are_accepted(port: int):
    assert lan.accept(answer(port=port), CID) is not None


@pytest.mark.parametrize("txt", [
    {"h": "cd" * 32},  # another share
    {"h": CID[:63]},  # truncated
    {"h": None},  # key with no value
    {"drop": "h"},  # no hash
    {"v": "2"},  # a later format we do not know
    {"drop": "v"},
    {"h": CID.encode().hex()[:64]},  # not our hash
])
def test_answers_for_another_hash_or_version_are_ignored(txt: dict):
    assert lan.accept(answer(**txt), CID) is None


def test_hash_and_keys_compare_case_insensitively():
    raw = {b"V": b"1", b"H": CID.upper().encode()}
    got = lan.accept(lan.Answer(NAME, 8080, ("10.0.0.2",), raw), CID)
    assert got is not None


def test_non_ascii_txt_values_are_ignored():
    raw = {b"v": b"1", b"h": CID.encode()[:-1] + b"\xff"}
    assert lan.accept(lan.Answer(NAME, 8080, ("10.0.0.2",), raw), CID) is None


@pytest.mark.parametrize("url", [
    "http://8.8.8.8:8080",  # public
    "http://signal.example.org:8080",  # a host name: an unchecked second hop
    "http://127.0.0.1:8080",  # our own loopback
    "http://10.0.0.1",  # port 80: privileged
    "https://10.0.0.1",  # 443
    "http://10.0.0.1:22",
    "http://10.0.0.1:99999",  # absurd
    "ftp://10.0.0.1:2121",  # not a signaling scheme
    "file:///etc/passwd",
    "http://user:pw@10.0.0.1:8080",  # credentials: not ours to send
    "http://10.0.0.1:8080/ x",
    "http://[fe80::1%25eth0]:8080",
    "http://10.0.0.1:8080/" + "a" * 300,  # longer than a TXT string
    "",
])
def test_hostile_txt_signal_urls_are_ignored(url: str):
    assert lan.accept(answer(s=url), CID) is None
    # the SRV port and addresses do not rescue an answer whose `s` is refused
    assert lan.accept(answer(s=url, port=8080, addresses=("10.0.0.2",)), CID) is None


@pytest.mark.parametrize("url", ["http://10.0.0.1:8080", "ws://192.168.1.2:3000/x",
                                 "https://[fd00::1]:8443", "wss://100.100.1.1:9443"])
def test_lan_signal_urls_are_accepted(url: str):
    assert lan.lan_signal_url(url) == url


@given(st.dictionaries(st.binary(max_size=20), st.none() | st.binary(max_size=300),
                       max_size=8),
       st.none() | st.integers(-10, 10**6),
       st.lists(st.text(max_size=50), max_size=5))
def test_any_answer_is_refused_or_leads_to_a_lan_address(txt, port, addresses):
    got = lan.accept(lan.Answer(NAME, port, tuple(addresses), txt), CID)
    if got is not None:
        assert lan.lan_signal_url(got.signal_url) == got.signal_url


def test_a_search_resolves_only_our_prefix_once_each_and_the_first_good_answer_wins():
    search = lan.Search(CID)
    assert not search.should_resolve(f"p2p-{'cd' * 8}-000000.{lan.SERVICE_TYPE}")
    assert not search.should_resolve(f"my printer.{lan.SERVICE_TYPE}")
    assert search.should_resolve(NAME)
    assert not search.should_resolve(NAME.upper())  # the same instance again
    assert search.offer(answer(addresses=("8.8.8.8",))) is None
    assert search.found is None and len(search.ignored) == 1
    first = search.offer(answer(addresses=("10.0.0.1",)))
    assert first is not None and search.found == first
    assert search.offer(answer(addresses=("10.0.0.2",))) is None  # too late
    assert search.found == first
    other = f"p2p-{CID[:16]}-ffffff.{lan.SERVICE_TYPE}"
    assert not search.should_resolve(other)  # done: nothing more to look up


def test_a_flood_of_instances_costs_at_most_max_resolves_lookups():
    search = lan.Search(CID)
    names = [f"p2p-{CID[:16]}-{i:06x}.{lan.SERVICE_TYPE}" for i in range(1000)]
    assert sum(search.should_resolve(n) for n in names) == lan.MAX_RESOLVES


def test_what_a_seeder_announces():
    assert lan.why_not_announced(port=8080, signal_url=None, token=False) is None
    assert lan.why_not_announced(port=None, signal_url="http://10.0.0.1:9000",
                                 token=False) is None
    assert "token" in lan.why_not_announced(port=8080, signal_url=None, token=True)
    assert "below 1024" in lan.why_not_announced(port=80, signal_url=None, token=False)
    # A loopback or public --signal: fetchers elsewhere on the LAN could not use it.
    assert "not a LAN address" in lan.why_not_announced(
        port=None, signal_url="http://127.0.0.1:8080", token=False)
    assert "not a LAN address" in lan.why_not_announced(
        port=None, signal_url="https://signal.example.org", token=False)


def test_only_a_bare_hash_without_signal_looks_on_the_lan():
    assert bare(parse_target(CID), None)
    assert not bare(parse_target(CID), "http://10.0.0.1:8080")  # --signal / P2P_SIGNAL
    # a link never waits for mDNS
    assert not bare(parse_target(f"p2p://{CID}?signal=http%3A%2F%2F10.0.0.1%3A8080"), None)
    # a link with no signal= is a bare hash in disguise
    assert bare(parse_target(f"p2p://{CID}?name=a.mp4"), None)
