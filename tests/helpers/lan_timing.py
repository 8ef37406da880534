"""Measure a bare-hash fetch's time to first byte through mDNS, against a full link's.

Not a test (tests never assert times): run it by hand, as root, for the figure README's
"On a LAN" quotes (the search's own length, ~0.1 s). Two namespaces on a bridge
(tests/netns.py); `p2p seed` in one, with its embedded server; in the other, alternately,
`p2p fetch <bare hash>` (found on the LAN) and `p2p fetch <link>` (the same server, named
by the link: no mDNS), so every mDNS figure has a baseline from the same run. Also times a
bare-hash fetch with no seeder anywhere (its failure: the LAN search, then the default
server's retries).

First byte: from starting the process to reading its first `piece-verified` event.

    PYTHONPATH=$PWD python tests/helpers/lan_timing.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import netns


def first_byte(cmd: list[str], env: dict) -> tuple[float, float | None, int]:
    """(seconds to the first piece-verified event, the LAN search's own length as its
    lan-searched event says (None: no search), exit code)."""
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                         start_new_session=True)
    got: dict[str, float] = {}

    def read() -> None:
        assert p.stderr is not None
        for line in p.stderr:
            now = time.monotonic() - start
            if b'"piece-verified"' in line and "first" not in got:
                got["first"] = now
            elif b'"lan-searched"' in line:
                got["search"] = json.loads(line)["seconds"]

    t = threading.Thread(target=read)
    t.start()
    rc = p.wait(120)
    t.join(10)
    return got.get("first", float("nan")), got.get("search"), rc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=2_000_000)
    args = ap.parse_args()
    env = {**os.environ, "P2P_LAN": "1", "PYTHONUNBUFFERED": "1"}
    work = Path(f"/tmp/lan_timing_{os.getpid()}")
    work.mkdir()
    env["P2P_CACHE_DIR"] = str(work / "cache")
    src = work / "src.bin"
    src.write_bytes(os.urandom(args.size))
    lab = netns.Lab().start()
    seed = None
    try:
        a, b = lab.add("a"), lab.add("b")
        seed = subprocess.Popen(a.p2p("seed", str(src), "--ice-host", a.addr, "--json"),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        assert seed.stdout is not None
        link = seed.stdout.readline().decode().strip()
        cid = link.split("://", 1)[1].split("?", 1)[0]
        time.sleep(2)  # the announcement's probing
        rows: dict[str, list[float]] = {"bare hash (mDNS)": [], "link (no mDNS)": []}
        search: list[float] = []
        for i in range(args.runs):
            for label, target in (("bare hash (mDNS)", cid), ("link (no mDNS)", link)):
                out = work / f"out{i}{len(label)}"
                fb, lan, rc = first_byte(
                    b.p2p("fetch", target, "--ice-host", b.addr, "--json", "-o", str(out)),
                    env)
                assert rc == 0, (label, rc)
                rows[label].append(fb)
                if lan is not None:
                    search.append(lan)
        fails = []
        for _ in range(max(2, args.runs // 2)):
            start = time.monotonic()
            r = subprocess.run(b.p2p("fetch", "cd" * 32, "--ice-host", b.addr, "-o",
                                     str(work / "none")), env=env, capture_output=True,
                               timeout=120)
            fails.append(time.monotonic() - start)
            assert r.returncode == 3, r.stderr
        for label, xs in rows.items():
            print(f"{label:18} first byte: median {statistics.median(xs):.3f}s  "
                  f"all {[round(x, 3) for x in xs]}")
        base = statistics.median(rows["link (no mDNS)"])
        lan_med = statistics.median(rows["bare hash (mDNS)"])
        print(f"ratio bare/link: {lan_med / base:.2f}; extra {lan_med - base:+.3f}s")
        print(f"LAN search itself (lan-searched seconds): {[round(x, 3) for x in search]}")
        print(f"no seeder anywhere, exit 3 after: {[round(x, 3) for x in fails]}")
    finally:
        if seed is not None:
            seed.terminate()
            seed.wait(10)
        lab.close()
        subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    main()
