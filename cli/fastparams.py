"""Options coerced without pydantic in the ordinary case: start-up time.

typer 0.29 coerces every option's value through a pydantic TypeAdapter, built per option
when the command runs: importing pydantic and building the adapters of `p2p stream`'s
options cost ~60 ms of CPU, about an eighth of the command's CPU by its first frame.

`install()` gives typer's parameters a plain coercion for the values our options take in
the ordinary case: a str, a plain decimal integer or number within the option's min/max, a
list of str, a bool. Any other value ('5.0', ' 5', 'abc', 0 where the minimum is 1) goes to
typer's own pydantic coercion, so what is accepted, and every error message, stay typer's.
It replaces typer's private `_TyperParameter.get_runtime_param`, so it installs over the
pinned typer only; tests/test_cli_fastparams.py checks that both coercions agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import typer

PINNED_TYPER_VERSION = "0.29.2"

#: What pydantic turns into the same int / float as Python's int() / float() do. Bounded:
#: int() refuses over 4300 digits with a ValueError typer would have worded as a usage error.
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,17})?")
#: The annotations the plain coercion knows.
_PLAIN = (str, int, float, bool, list[str])
#: Strings a bool option takes from its environment variable (P2P_LAN=0), as pydantic reads
#: them; its other spellings (" 1", "") are left to it.
_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "y": True, "t": True,
          "0": False, "false": False, "no": False, "off": False, "n": False, "f": False}

_stock_get_runtime_param: Any = None
"""typer's own `get_runtime_param`, once `install()` replaced it."""


def plain_value(annotation: Any, value: Any) -> tuple[bool, Any]:
    """(True, the coerced value) when `value` needs no pydantic; (False, None) otherwise."""
    if annotation is str or annotation is bool:
        if type(value) is annotation:
            return True, value
        if annotation is bool and type(value) is str and value.lower() in _BOOLS:
            return True, _BOOLS[value.lower()]
    elif annotation is int:
        if type(value) is int:
            return True, value
        if type(value) is str and _INT.fullmatch(value):
            return True, int(value)
    elif annotation is float:
        if type(value) is float:
            return True, value
        if type(value) is str and _FLOAT.fullmatch(value):
            return True, float(value)
    elif (annotation == list[str] and isinstance(value, (list, tuple))
          and all(type(v) is str for v in value)):
        return True, list(value)
    return False, None


def _plain_getter() -> Any:
    """typer's `get_runtime_param` with the plain coercion in front. typer's private modules
    are imported here, after the version check: another typer may not have them."""
    from typer import _coercion, core

    @dataclass(frozen=True)
    class _Plain(_coercion.RuntimeParam):
        """typer's coercion contract (None and multi-value checks are the base class's)."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            ok, out = plain_value(self.annotation, value)
            info = self.parameter_info
            if ok and (info.min is None or out >= info.min) and (
                    info.max is None or out <= info.max):
                return out
            # Anything else is typer's to accept, convert or refuse, in its own words.
            stock = _coercion.build_runtime_param(param.type_descriptor)
            return stock._coerce_value(value, param=param, ctx=ctx)

    def _get_runtime_param(self: core._TyperParameter) -> _coercion.RuntimeParam:
        if self._runtime_param is None:
            d = self.type_descriptor
            info = d.parameter_info
            ranged = info.min is not None or info.max is not None
            if (d.annotation in _PLAIN and info.parser is None and not d.is_file
                    and not d.is_path and not d.is_choice
                    and (not ranged or d.annotation in (int, float))):
                self._runtime_param = _Plain(parameter_info=info, annotation=d.annotation)
            else:
                self._runtime_param = _coercion.build_runtime_param(d)
        return self._runtime_param

    return _get_runtime_param


def install() -> bool:
    """Use the plain coercion from now on; False (and typer's own) on another typer."""
    global _stock_get_runtime_param
    if typer.__version__ != PINNED_TYPER_VERSION:
        return False
    try:
        from typer import core

        getter = _plain_getter()
        stock = core._TyperParameter.get_runtime_param
    except (ImportError, AttributeError):  # pragma: no cover - the pinned typer has them
        return False
    if _stock_get_runtime_param is None:
        _stock_get_runtime_param = stock
    core._TyperParameter.get_runtime_param = getter  # type: ignore[method-assign]
    return True


def uninstall() -> None:
    if _stock_get_runtime_param is not None:
        from typer import core

        core._TyperParameter.get_runtime_param = _stock_get_runtime_param  # type: ignore[method-assign]
