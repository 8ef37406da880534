"""Numbers in words for people (issue 16, rough edge 2): one unit system for every byte count
and rate (rich's decimal `filesize`, as the progress bar says it: `984.2 kB/s`), and every
count agreeing with its noun (`1 peer`, `2 peers`), in every event the renderer shows.

The seeder once said "984.2 KB/s" beside a bar saying "399.3 kB/s" and a piece size of
"16 KiB"; "1 peers" and "1 peer(s)"; and "done: small.bin -> small.bin"."""

from __future__ import annotations

import re
from typing import Any

import pytest
from test_human_mode import SAMPLES, render

from p2p_cli.output import plural, rate, size

#: Fields that count bytes, and fields that count things, across every event's sample.
BYTE_FIELDS = {"size", "sent", "rate", "buffer_ahead", "piece_size"}
COUNT_FIELDS = {"peers", "pieces"}
WRONG_UNITS = re.compile(r"\d ?(KB|KiB|MiB|GiB|TiB)\b")  # kB, MB, GB: decimal, as the bar
# (rich's bar says "0/1 bytes": a fraction of the total, not a count.)
WRONG_PLURAL = re.compile(
    r"(?<![/\d.])1 (peers|pieces|verified pieces|bytes|files|messages)\b|\(s\)")


def shapes() -> list[tuple[str, int]]:
    return [(k, i) for k, evs in SAMPLES.items() for i in range(len(evs))]


@pytest.mark.parametrize(("kind", "i"), shapes())
@pytest.mark.parametrize("n", [0, 1, 2, 984_200, 1_500_000_000])
def test_every_number_reads_in_one_unit_system_with_agreeing_nouns(
    kind: str, i: int, n: int, capsys: pytest.CaptureFixture[str]
) -> None:
    ev: dict[str, Any] = dict(SAMPLES[kind][i])
    for key, value in ev.items():
        if key in BYTE_FIELDS | COUNT_FIELDS and isinstance(value, int):
            ev[key] = n
    if kind == "done":
        ev["peers"] = {f"p{j}": 1 for j in range(min(n, 3))}
    err = render(ev, kind, capsys)
    assert not WRONG_UNITS.search(err), err
    assert not WRONG_PLURAL.search(err), err
    if n == 984_200 and kind in ("hashed", "status", "manifest", "done"):
        assert "984.2 kB" in err, err


def test_the_formatters() -> None:
    assert size(984_200) == "984.2 kB" and rate(984_200) == "984.2 kB/s"
    assert size(16384) == "16.4 kB" and size(1) == "1 byte" and size(0) == "0 bytes"
    assert [plural(n, "peer") for n in (0, 1, 2)] == ["0 peers", "1 peer", "2 peers"]


def test_done_names_the_destination_only_when_it_is_elsewhere(
    capsys: pytest.CaptureFixture[str]
) -> None:
    base = SAMPLES["done"][0]
    assert "->" not in render({**base, "path": "a.bin"}, "done", capsys)
    assert "->" not in render({**base, "path": "./a.bin"}, "done", capsys)
    assert "done: a.bin -> out/a.bin," in render({**base, "path": "out/a.bin"}, "done", capsys)


@pytest.mark.parametrize(("n", "words"), [(1, "1 peer connected, 1 message relayed"),
                                          (2, "2 peers connected, 2 messages relayed")])
def test_the_signaling_servers_last_line_counts_in_words(
    n: int, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from p2p_cli.serve_signal import _ServerLog
    from p2pcli.signaling.log import Stopping

    _ServerLog(quiet=False, json=False)(Stopping(stats={"peers": n, "relayed": n, "uptime": 3}))
    assert f"stopping: {words} in 3s" in capsys.readouterr().err


def test_no_message_anywhere_hedges_a_plural_with_s_in_parentheses():
    """Errors and warnings are written outside the renderer too (the swarm's diagnosis,
    doctor): every string in the code is checked, so a new "peer(s)" fails here."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    found = []
    for path in [*root.glob("cli/*.py"), *root.glob("p2pcli/**/*.py")]:
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef
                              | ast.AsyncFunctionDef)
                and n.body and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docs
                    and re.search(r"(?<!http)(?<!ws)\(s\)", node.value)):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value[:60]!r}")
    assert not found, "\n".join(found)


def test_the_fetch_bar_counts_only_the_selected_files():
    """With --select, progress events carry the chosen pieces' size: the bar's total
    follows them (it showed 0.1/2.1 MB for a 73.5 kB selection)."""
    from p2p_cli.output import Reporter
    from p2pcli import events as ev

    r = Reporter()
    try:
        r(ev.Manifest(peer="p", name="holiday", size=2_073_500, piece_size=16384, pieces=127))
        r(ev.Progress(peers=1, received=73_500, rate=0, sent=0, size=73_500, have=73_500,
                      pieces=5, verified=5))
        assert r.progress is not None and r.task is not None
        task = r.progress.tasks[0]
        assert (task.total, task.completed) == (73_500, 73_500)
    finally:
        r.close()
