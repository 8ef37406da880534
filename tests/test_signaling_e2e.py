"""Real `p2p` processes against `p2p serve-signal`: restarts, access tokens and TLS.

- A signaling server killed mid-transfer: the transfer goes on over WebRTC, the seeder
  reconnects to the restarted server and announces again, so a new fetcher finds it.
- A server with --token: the seeder's link carries the token; a wrong or missing one is
  one line and exit code 2.
- A server with a self-signed certificate: clients trust it through SSL_CERT_FILE, and
  say so when they do not.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from conftest import Proc, Procs, free_port, make_file, one_line_error, sha256, wait_port
from test_signaling_guard import self_signed

pytestmark = pytest.mark.timeout(180)


def serve_signal(procs: Procs, port: int, *extra: str, name: str = "signal", **kw) -> Proc:
    p = procs.p2p("serve-signal", "--host", "127.0.0.1", "--port", str(port), "--json",
                  *extra, name=name, **kw)
    p.wait_for(lambda p: any(e.get("event") == "listening" for e in p.events()), 30,
               "listening")
    return p


def seed(procs: Procs, path: Path, url: str, *extra: str, name: str = "seed", **kw) -> tuple[
    Proc, str
]:
    p = procs.p2p("seed", str(path), "--ice-host", "127.0.0.1", "--json", "--signal", url,
                  *extra, name=name, **kw)
    link = p.wait_for(lambda p: p.stdout.strip().splitlines()[0] if p.stdout.strip() else None,
                      60, "the link")
    return p, link


def test_a_restarted_server_loses_no_transfer_and_the_seeder_announces_again(
    procs: Procs, tmp_path: Path
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = serve_signal(procs, port, name="signal-1")
    src = make_file(tmp_path / "movie.bin", 6 * 2**20)
    # Slow enough (about 6 s) to kill the server in the middle of the transfer.
    seeder, link = seed(procs, src, url, "--max-upload-rate", "1M")
    fetch = procs.fetch(link, "-o", str(tmp_path / "during.bin"), "--timeout", "60",
                        name="fetch-during")
    fetch.wait_for(lambda p: any(e.get("event") == "piece-verified" for e in p.events()),
                   60, "a first verified piece")
    server.p.send_signal(signal.SIGKILL)
    server.wait(10)
    assert fetch.p.poll() is None
    serve_signal(procs, port, name="signal-2")
    assert fetch.wait(120) == 0, fetch.stderr[-3000:]
    assert sha256(tmp_path / "during.bin") == sha256(src)
    # Only the seeder can have told the new server about the content.
    after = procs.fetch(link, "-o", str(tmp_path / "after.bin"), "--timeout", "60",
                        name="fetch-after")
    assert after.wait(120) == 0, after.stderr[-3000:]
    assert sha256(tmp_path / "after.bin") == sha256(src)
    assert seeder.p.poll() is None


def test_the_token_travels_in_the_link_and_a_wrong_one_is_a_usage_error(
    procs: Procs, tmp_path: Path
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve_signal(procs, port, "--token", "s3cret")
    src = make_file(tmp_path / "a.bin", 300_000)
    _, link = seed(procs, src, url, "--token", "s3cret")
    assert "token=s3cret" in link
    ok = procs.fetch(link, "-o", str(tmp_path / "ok.bin"), name="fetch-ok")
    assert ok.wait(90) == 0, ok.stderr[-3000:]
    assert sha256(tmp_path / "ok.bin") == sha256(src)
    content = link.split("://")[1].split("?")[0]
    for extra, name in ((["--token", "wrong"], "wrong"), ([], "missing")):
        bad = procs.fetch(content, "--signal", url, "-o", str(tmp_path / f"{name}.bin"),
                          *extra, name=f"fetch-{name}")
        line = one_line_error(bad, 2)
        assert "refused the access token" in line and "--token" in line


def test_tls_with_a_certificate_trusted_through_ssl_cert_file(procs: Procs, tmp_path: Path):
    cert, key = self_signed(tmp_path)
    port = free_port()
    serve_signal(procs, port, "--cert", str(cert), "--key", str(key))
    wait_port(port)
    url = f"https://127.0.0.1:{port}"
    trusting = {**procs.env, "SSL_CERT_FILE": str(cert)}
    src = make_file(tmp_path / "b.bin", 300_000)
    _, link = seed(procs, src, url, env=trusting)
    ok = procs.fetch(link, "-o", str(tmp_path / "ok.bin"), name="fetch-ok", env=trusting)
    assert ok.wait(90) == 0, ok.stderr[-3000:]
    assert sha256(tmp_path / "ok.bin") == sha256(src)
    untrusting = procs.fetch(link, "-o", str(tmp_path / "no.bin"), "--retries", "1",
                             name="fetch-untrusting")
    line = one_line_error(untrusting, 4)
    assert "SSL_CERT_FILE" in line
