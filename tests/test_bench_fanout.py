"""benchmarks/transfer.py's seeder fan-out rows: names and arithmetic (no processes, no timings)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import transfer  # noqa: E402

MIB = 1 << 20


@pytest.mark.parametrize(("name", "shape"), [
    ("1to1", (1, 1, False)), ("2to1", (2, 1, False)), ("1to3", (1, 3, False)),
    ("1to4", (1, 4, False)), ("1to16", (1, 16, False)), ("1to1-stock", (1, 1, True)),
])
def test_seeders_to_fetchers_names_parse(name: str, shape: tuple[int, int, bool]) -> None:
    assert transfer.p2p_shape(name) == shape
    assert transfer.known_scenario(name)


@pytest.mark.parametrize("name", ["0to1", "1to0", "1to65", "1to4-fast", "1to", "to4", "bare2"])
def test_other_names_are_not_p2p_rows(name: str) -> None:
    assert transfer.p2p_shape(name) is None
    assert not transfer.known_scenario(name)


def test_an_unknown_scenario_is_refused_before_anything_starts() -> None:
    with pytest.raises(SystemExit) as exc:
        transfer.main(["--scenarios", "bare,1to0"])
    assert exc.value.code == 2


def test_fan_out_figures_count_what_the_seeder_uploaded() -> None:
    # 4 fetchers of 64 MiB; the seeder sent 3 copies' worth, the fetchers traded the rest.
    row = transfer.figures(
        64 * MIB, wall=8.0, fetch_wall=[4.0, 6.0, 7.0, 8.0], transfer=[3.0, 5.0, 6.0, 7.5],
        seed_cpu=3.0, fetch_cpu=12.0, seed_up=192 * MIB, seed_rss=150_000_000,
        fetch_rss=110_000_000, refused=(0, 2))
    assert row["fetchers"] == 4
    assert row["mb_per_s"] == round(4 * 64 * MIB / 8.0 / 1e6, 2)
    assert row["seed_share"] == 0.75
    assert row["seed_cpu_s_per_gib"] == 12.0  # per GiB delivered (1/4 GiB)
    assert row["seed_cpu_s_per_gib_up"] == 16.0  # per GiB the seeder sent (3/16 GiB)
    assert row["seed_up_mb_per_s"] == round(192 * MIB / 8.0 / 1e6, 2)
    # The median fetcher's rate (of an even count: the mean of the middle two rates).
    assert row["fetch_median_mb_per_s"] == round((64 * MIB / 6 + 64 * MIB / 7) / 2 / 1e6, 2)
    assert row["fetch_median_mb_per_s_connected"] == round(
        (64 * MIB / 5 + 64 * MIB / 6) / 2 / 1e6, 2)
    assert (row["refused_by_seed"], row["refused_by_fetchers"]) == (0, 2)


def test_a_row_whose_seeder_sent_nothing_has_no_per_upload_figure() -> None:
    row = transfer.figures(MIB, 1.0, [1.0], [0.5], seed_cpu=0.1, fetch_cpu=0.1, seed_up=0,
                           seed_rss=1, fetch_rss=1, refused=(0, 0))
    assert "seed_cpu_s_per_gib_up" not in row
    assert row["seed_share"] == 0.0
