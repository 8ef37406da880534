"""cli/fastparams.py: typer's option coercion without pydantic, with the same outcome."""

from __future__ import annotations

import pytest
import typer
from test_lazy_imports import _modules_after
from typer import _adapters
from typer.models import OptionInfo

from p2p_cli import fastparams

CASES = [
    (str, "a.mp4"), (str, ""), (str, "caf\udce9"), (str, "ünï"),
    (int, "0"), (int, "8080"), (int, "-3"), (int, 32),
    (float, "10"), (float, "2.5"), (float, "-0.25"), (float, 10.0),
    (bool, True), (bool, False),
    # From an environment variable (P2P_LAN=0): the test suite sets one for every command.
    (bool, "0"), (bool, "1"), (bool, "TRUE"), (bool, "off"), (bool, "Yes"), (bool, "n"),
    (list[str], ("127.0.0.1",)), (list[str], ["a", "b"]), (list[str], ()),
]


@pytest.mark.parametrize(("annotation", "value"), CASES)
def test_the_plain_coercion_gives_what_typers_pydantic_one_gives(annotation, value):
    ok, out = fastparams.plain_value(annotation, value)
    assert ok
    stock = _adapters.try_build_adapter(annotation, OptionInfo()).validate_python(value)
    assert out == stock and type(out) is type(stock)


@pytest.mark.parametrize(("annotation", "value"), [
    (int, "007"), (int, "+5"), (int, " 5"), (int, "5_0"), (int, "5.0"), (int, "abc"),
    (int, "٣"), (float, ".5"), (float, "1e3"), (float, "nan"), (float, 10), (str, 5),
    (bool, " 1"), (bool, ""), (bool, "2"), (list[str], ("a", 1)), (list[str], "ab"),
])
def test_any_other_value_is_left_to_typer(annotation, value):
    assert fastparams.plain_value(annotation, value) == (False, None)


def _parse(args: list[str]) -> dict:
    app = typer.Typer()
    got: dict = {}

    @app.command()
    def cmd(
        port: int = typer.Option(0, "--port"),
        peers: int = typer.Option(32, "--peers", min=1),
        timeout: float = typer.Option(10.0, "--timeout"),
        host: list[str] | None = typer.Option(None, "--host"),
        name: str | None = typer.Option(None, "--name"),
    ) -> None:
        got.update(port=port, peers=peers, timeout=timeout, host=host, name=name)

    try:
        app(args, standalone_mode=False)
    except Exception as e:  # the error itself is what is compared
        return {"error": type(e).__name__, "message": str(e)}
    return got


@pytest.mark.parametrize("args", [
    [], ["--port", "8080", "--timeout", "2.5", "--host", "a", "--host", "b", "--name", "x"],
    ["--port", "007", "--timeout", "1e1"],  # typer's own path: pydantic accepts these
    ["--port", "abc"], ["--timeout", "x"], ["--peers", "0"], ["--peers", "5"],
])
def test_a_command_parses_and_refuses_as_typer_does(args):
    stock = _parse(args)
    assert fastparams.install()
    try:
        assert _parse(args) == stock
    finally:
        fastparams.uninstall()


def test_stream_parses_its_options_without_pydantic():
    loaded = _modules_after(
        "from p2p_cli import fastparams\n"
        "fastparams.install()\n"
        "import p2pcli.runner\n"
        "p2pcli.runner.run = lambda *a, **k: None\n"
        "from p2p_cli.main import app\n"
        "app(['stream', 'p2p://' + '0' * 64 + '?name=a.mp4', '--ice-host', '127.0.0.1',\n"
        "     '--player', 'none', '--port', '0', '--timeout', '5', '--max-peers', '8',\n"
        "     '--quiet'], standalone_mode=False)\n"
    )
    assert "p2pcli" in loaded and "pydantic" not in loaded


def test_another_typer_keeps_its_own_coercion(monkeypatch):
    stock = typer.core._TyperParameter.get_runtime_param
    monkeypatch.setattr(typer, "__version__", "0.99.0")
    assert not fastparams.install()
    assert typer.core._TyperParameter.get_runtime_param is stock


def test_a_typer_without_the_private_modules_still_loads_it():
    # An older typer (0.20 has no typer._coercion) must still run every command: the
    # private imports happen in install(), after the version check.
    loaded = _modules_after(
        "import sys, typer\n"
        "typer.__version__ = '0.20.0'\n"
        "del typer._coercion\n"
        "sys.modules['typer._coercion'] = None\n"
        "from p2p_cli import fastparams\n"
        "assert fastparams.install() is False\n"
    )
    assert "p2p_cli" in loaded


@pytest.mark.parametrize("value", ["1" * 5000, "-" + "9" * 30, "1" * 19])
def test_huge_numbers_are_typers_to_refuse(value):
    # int() refuses over 4300 digits with a ValueError: typer words that as a usage error.
    assert fastparams.plain_value(int, value) == (False, None)
    assert fastparams.plain_value(float, value) == (False, None)
