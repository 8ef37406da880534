"""benchmarks/transfer.py's libdatachannel row and its namespace mode still run (no timings).

benchmarks/ndc_channel.mjs moves 1 MiB between two node processes through node-datachannel
and reports one JSON line; transfer.py runs it in a namespace with a 1500-byte loopback MTU
and 5% UDP loss. Figures are printed by the benchmark, never asserted here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import netns
import pytest

ROOT = Path(__file__).resolve().parent.parent
NDC = ROOT / "benchmarks" / "ndc_channel.mjs"
TRANSFER = ROOT / "benchmarks" / "transfer.py"
sys.path.insert(0, str(ROOT / "benchmarks"))
import transfer  # noqa: E402

pytestmark = pytest.mark.timeout(60)
needs_ndc = pytest.mark.skipif(
    shutil.which("node") is None
    or not (ROOT / "tests" / "js" / "node_modules" / "node-datachannel").is_dir(),
    reason="needs node and `npm ci` in tests/js",
)
MIB = 1 << 20


def check_ndc_result(res: dict, size: int) -> None:
    assert res["size"] == size
    assert res["mb_per_s"] > 0
    for side in ("sender", "receiver"):
        assert res[side]["cpu_s"] >= 0
        assert res[side]["peak_rss_bytes"] > 0


@needs_ndc
def test_ndc_channel_moves_the_bytes_and_reports_one_json_line() -> None:
    out = subprocess.run(["node", str(NDC), "--size", "1M", "--timeout", "30"],
                         capture_output=True, text=True, timeout=45)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 1
    res = json.loads(lines[0])
    check_ndc_result(res, MIB)
    assert res["processes"] == 2
    assert res["sender"]["pid"] != res["receiver"]["pid"]
    assert res["node_datachannel"].startswith("0.33.")


@needs_ndc
@pytest.mark.skipif(netns.unavailable() is not None, reason=str(netns.unavailable()))
def test_transfer_runs_ndc_in_a_namespace_with_mtu_1500_and_loss() -> None:
    out = subprocess.run(
        [sys.executable, str(TRANSFER), "--mtu", "1500", "--loss", "0,5", "--scenarios", "ndc",
         "--size", "1M", "--json"], capture_output=True, text=True, timeout=50)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["mtu"] == 1500
    [rows] = res["rounds"]
    assert set(rows) == {"ndc", "ndc@5%"}
    assert all(row["mb_per_s"] > 0 and row["x_ndc"] == 1.0 for row in rows.values())


def test_ratios_compare_rows_at_the_same_loss() -> None:
    rows = {"ndc": {"mb_per_s": 100.0}, "bare": {"mb_per_s": 25.0},
            "1to1": {"mb_per_s": 50.0}, "ndc@5%": {"mb_per_s": 80.0},
            "bare@5%": {"mb_per_s": 10.0}, "1to1@5%": {"mb_per_s": 4.0}}
    transfer.add_ratios(rows)
    assert (rows["1to1"]["x_ndc"], rows["1to1"]["x_bare"]) == (0.5, 2.0)
    assert (rows["1to1@5%"]["x_ndc"], rows["1to1@5%"]["x_bare"]) == (0.05, 0.4)


def test_a_bad_loss_is_refused_before_anything_starts() -> None:
    with pytest.raises(SystemExit) as exc:
        transfer.main(["--loss", "150", "--scenarios", "ndc"])
    assert exc.value.code == 2
