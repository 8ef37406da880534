"""p2pcli/patches.py: importing p2p changes no library; one `apply()` makes every change.

Process-wide state is checked in a fresh interpreter (subprocess), so what this test
process already imported or applied does not matter.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import aioice
import aioice.ice
import aiortc.rtcpeerconnection as pc_module
import pytest
from aiortc import rtcdtlstransport as dtls
from aiortc import rtcsctptransport as sctp
from conftest import ROOT

from p2pcli import aiortc_tuning, patches

# Prints which library names are p2p's after the code in {} ran, as JSON.
STATE = """
import json, aioice.ice, aiortc.rtcpeerconnection as pc
from aiortc import rtcdtlstransport as dtls, rtcsctptransport as sctp
stock_hosts = aioice.ice.get_host_addresses
stock_connect = aioice.ice.Connection.connect
stock_request = aioice.ice.StunProtocol.request
{}
print(json.dumps({{
    "hosts_patched": aioice.ice.get_host_addresses is not stock_hosts,
    "ice_patched": aioice.ice.Connection.connect is not stock_connect,
    "checks_patched": aioice.ice.StunProtocol.request is not stock_request,
    "sctp_patched": pc.RTCSctpTransport is not sctp.RTCSctpTransport,
    "dtls_patched": pc.RTCDtlsTransport is not dtls.RTCDtlsTransport,
}}))
"""

IMPORT_EVERYTHING = """
import importlib, pkgutil, p2pcli
names = [m.name for m in pkgutil.walk_packages(p2pcli.__path__, "p2pcli.")]
assert "p2pcli.rtc" in names and "p2pcli.patches" in names, names
for name in names:
    importlib.import_module(name)
"""


def _state(code: str, **env: str) -> dict[str, bool]:
    full_env = {k: v for k, v in os.environ.items() if k != patches.STOCK_AIORTC_ENV} | env
    out = subprocess.run([sys.executable, "-c", STATE.format(code)], env=full_env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_every_p2pcli_module_patches_nothing():
    assert _state(IMPORT_EVERYTHING) == {"hosts_patched": False, "ice_patched": False,
                                         "checks_patched": False, "sctp_patched": False,
                                         "dtls_patched": False}


@pytest.mark.parametrize(("env", "tuned"), [
    ({}, True), ({"P2P_STOCK_AIORTC": "1"}, False), ({"P2P_STOCK_AIORTC": "0"}, True),
])
def test_apply_tunes_aiortc_unless_the_environment_asks_for_stock(env, tuned):
    state = _state("from p2pcli import patches; patches.apply()", **env)
    assert state == {"hosts_patched": False, "ice_patched": True, "checks_patched": True,
                     "sctp_patched": tuned, "dtls_patched": tuned}


def test_apply_chooses_host_addresses_and_a_second_apply_replaces_the_first():
    state = _state("from p2pcli import patches; patches.apply(['127.0.0.1'], stock_aiortc=True)")
    assert state == {"hosts_patched": True, "ice_patched": True, "checks_patched": True,
                     "sctp_patched": False, "dtls_patched": False}
    state = _state("from p2pcli import patches; patches.apply(['127.0.0.1']); patches.apply()",
                   P2P_STOCK_AIORTC="1")
    assert state == {"hosts_patched": False, "ice_patched": True, "checks_patched": True,
                     "sctp_patched": False, "dtls_patched": False}


def test_stock_environment_values():
    assert not patches.stock_aiortc_asked({})
    assert not patches.stock_aiortc_asked({"P2P_STOCK_AIORTC": ""})
    assert not patches.stock_aiortc_asked({"P2P_STOCK_AIORTC": "0"})
    assert not patches.stock_aiortc_asked({"P2P_STOCK_AIORTC": " False "})
    assert patches.stock_aiortc_asked({"P2P_STOCK_AIORTC": "1"})
    assert patches.stock_aiortc_asked({"P2P_STOCK_AIORTC": "yes"})


@pytest.fixture
def reverted():
    was_tuned = aiortc_tuning.installed()
    yield
    patches.revert()
    if was_tuned:
        aiortc_tuning.install()


def test_revert_puts_the_libraries_back(reverted):
    stock_hosts = aioice.ice.get_host_addresses
    patches.apply(["127.0.0.1"], stock_aiortc=False)
    patches.revert()
    assert aioice.ice.get_host_addresses is stock_hosts
    assert aioice.ice.Connection.connect is patches._stock_connect
    assert aioice.ice.StunProtocol.request is patches._stock_request
    assert pc_module.RTCSctpTransport is sctp.RTCSctpTransport
    assert pc_module.RTCDtlsTransport is dtls.RTCDtlsTransport
    assert dtls.RTCCertificate.getFingerprints is patches._stock_get_fingerprints


@pytest.mark.timeout(30)
async def test_our_sdp_carries_the_sha256_fingerprint_alone(reverted):
    """libdatachannel may check our certificate with sha-256 whatever else we list, and
    then compares with the last fingerprint listed (patches.py): so we list only that."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    def fingerprints(sdp: str) -> list[str]:
        return [line.split()[0] for line in sdp.splitlines() if line.startswith("a=fingerprint:")]

    for applied, expected in [(False, ["a=fingerprint:sha-256", "a=fingerprint:sha-384",
                                       "a=fingerprint:sha-512"]),
                              (True, ["a=fingerprint:sha-256"])]:
        if applied:
            patches.apply(["127.0.0.1"], stock_aiortc=True)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.createDataChannel("x")
        await pc.setLocalDescription(await pc.createOffer())
        assert fingerprints(pc.localDescription.sdp) == expected
        await pc.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("hosts, expected", [
    (["127.0.0.1"], {"127.0.0.1"}),
    (["127.0.0.1", "::1"], {"127.0.0.1", "::1"}),
])
async def test_aioice_gathers_exactly_the_chosen_host_addresses(reverted, hosts, expected):
    # aioice offers every non-loopback interface and has no option to choose: this fails
    # when a new aioice stops looking `get_host_addresses` up at gathering time.
    patches.apply(hosts, stock_aiortc=True)
    conn = aioice.Connection(ice_controlling=True, use_ipv6=True)
    try:
        await conn.gather_candidates()
        assert {c.host for c in conn.local_candidates if c.type == "host"} == expected
    finally:
        await conn.close()


#: sha256 of the source of aioice 0.13.0's `Connection.connect`, which `patches._connect`
#: copies with one change: a new aioice fails here until the copy is checked against it.
STOCK_CONNECT_SHA256 = "da51be46190141ee23c03ab8d77c030b45e412b6430369790ba4665a7a7886d2"


def test_the_ice_connect_copy_matches_the_pinned_aioice():
    import hashlib
    import inspect

    assert aioice.__version__ == patches.PINNED_AIOICE_VERSION
    source = inspect.getsource(patches._stock_connect)
    assert hashlib.sha256(source.encode()).hexdigest() == STOCK_CONNECT_SHA256


#: sha256 of the source of aioice 0.13.0's `StunProtocol.request`, which
#: `patches._request` copies with one change (checked the same way).
STOCK_REQUEST_SHA256 = "97991c38f65ea93975f911477d8bb6c852d862291e82def80706f5b97c696659"


def test_the_stun_request_copy_matches_the_pinned_aioice():
    import hashlib
    import inspect

    source = inspect.getsource(patches._stock_request)
    assert hashlib.sha256(source.encode()).hexdigest() == STOCK_REQUEST_SHA256


@pytest.mark.timeout(30)
@pytest.mark.parametrize("patched", [True, False])
async def test_a_connectivity_check_is_resent_sooner_and_a_server_request_is_not(
        reverted, patched):
    """Checks (signed with the remote password) are resent after CHECK_RTO, up to
    CHECK_RETRANSMISSIONS times; a STUN server request and a consent check as aioice does."""
    import aioice.stun

    patches.quick_check_retries(patched)

    class Wire:
        def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
            pass

    async def timer(key: bytes | None, resends: int | None) -> tuple[float, int]:
        """(seconds until the first resend, tries at most) of one request's transaction."""
        proto = aioice.ice.StunProtocol(receiver=None)
        proto.transport = Wire()
        msg = aioice.stun.Message(message_method=aioice.stun.Method.BINDING,
                                  message_class=aioice.stun.Class.REQUEST)
        task = asyncio.ensure_future(proto.request(msg, ("192.0.2.1", 9), key, resends))
        await asyncio.sleep(0)  # the first send: the delay it armed has doubled since
        t = proto.transactions[msg.transaction_id]
        first = t._Transaction__timeout_delay / 2
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return first, t._Transaction__tries_max

    stock = (aioice.stun.RETRY_RTO, 1 + aioice.stun.RETRY_MAX)
    assert await timer(b"remote-password", None) == (
        (patches.CHECK_RTO, 1 + patches.CHECK_RETRANSMISSIONS) if patched else stock)
    assert await timer(None, None) == stock  # a STUN server's binding request
    assert (await timer(b"remote-password", 0))[1] == 1  # a consent check


def test_the_ice_connect_is_not_installed_over_another_aioice(reverted, monkeypatch):
    monkeypatch.setattr(aioice, "__version__", "0.99.0")
    assert not patches.prompt_ice_checks(True)
    assert aioice.ice.Connection.connect is patches._stock_connect


async def _ice_pair() -> tuple[aioice.Connection, aioice.Connection]:
    a = aioice.Connection(ice_controlling=True)
    b = aioice.Connection(ice_controlling=False)
    for one, other in ((a, b), (b, a)):
        await one.gather_candidates()
        for c in one.local_candidates:
            await other.add_remote_candidate(c)
        await other.add_remote_candidate(None)
        other.remote_username, other.remote_password = one.local_username, one.local_password
    return a, b


@pytest.mark.timeout(30)
async def test_the_prompt_ice_connect_connects_and_carries_data(reverted):
    patches.apply(["127.0.0.1"], stock_aiortc=True)
    a, b = await _ice_pair()
    try:
        await asyncio.gather(a.connect(), b.connect())
        await a.send(b"hello")
        assert await asyncio.wait_for(b.recv(), 5) == b"hello"
        # What aioice's connect starts once connected: consent freshness checks.
        assert a._query_consent_task is not None and b._query_consent_task is not None
    finally:
        await asyncio.gather(a.close(), b.close())


@pytest.mark.timeout(30)
async def test_the_prompt_ice_connect_fails_when_closed_during_the_checks(reverted):
    patches.apply(["127.0.0.1"], stock_aiortc=True)
    a, b = await _ice_pair()
    await b.close()  # nobody answers a's checks
    task = asyncio.ensure_future(a.connect())
    await asyncio.sleep(0.1)
    await a.close()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(task, 10)
