"""How `--help` reads: what each option takes, and the commands' docstrings as paragraphs.

Typer shows an option's Python type when it has no metavar (`--signal <str>`, `--tracker
<list[str]>`, `--version <bool>`), which tells a person nothing about what to type. Every
option here gets a word for what it takes (`--signal URL`), flags none; the table is keyed by
the flag, because a flag means the same thing in every command that has it. A new option with
no entry fails tests/test_cli_options.py's census, so it cannot go out showing `<str>`.

Typer's rich help keeps a docstring's single line breaks (it joins them for options, not for
commands), so a docstring wrapped at 100 columns printed broken at 80: `tidy` joins each
paragraph's lines, as a person reading the help expects.
"""

from __future__ import annotations

import inspect
import re
import typing

import typer

#: What each non-flag option takes, as the help's type column shows it.
METAVARS: dict[str, str] = {
    "--signal": "URL[,URL...]",
    "--tracker": "WS_URL",
    "--peerjs": "PEERJS_URL",
    "--ice-server": "STUN_OR_TURN",
    "--ice-host": "IP",
    "--token": "TOKEN",
    "--timeout": "SECONDS",
    "--tries": "N",
    "--words": "N",
    "--expire": "SECONDS",
    "--from": "NAME",
    "--retries": "N",
    "--select": "INDEX_OR_PATTERN",
    "--max-peers": "N",
    "--max-peers-per-address": "N",
    "--max-upload-rate": "RATE",
    "--port": "PORT",
    "--public-host": "HOST",
    "--output": "PATH",
    "--player": "COMMAND",
    "--player-arg": "ARG",
    "--host": "ADDRESS",
    "--cors-origin": "ORIGIN",
    "--cert": "PEM_FILE",
    "--key": "PEM_FILE",
    "--redis": "REDIS_URL",
    "--node-timeout": "SECONDS",
    "--max-message-rate": "PER_SECOND",
    "--max-announce-rate": "PER_SECOND",
    "--max-rooms": "N",
    "--max-peer-list": "N",
    "--max-conns-per-ip": "N",
    "--ping-interval": "SECONDS",
    "--ping-timeout": "SECONDS",
    "--turn-secret": "SECRET",
    "--turn-ttl": "SECONDS",
    "--connect-timeout": "SECONDS",
}


def parameters(callback: typing.Callable[..., object]
               ) -> list[tuple[str, object, typer.models.ParameterInfo]]:
    """(flag or argument name, annotation, typer's info) of each of a command's parameters.

    The callback's annotations are replaced by their evaluated form: under `from __future__
    import annotations` they are strings, and each evaluation of an option written inline
    makes a new OptionInfo, so a metavar set on one would not be the one typer reads."""
    hints = typing.get_type_hints(callback, include_extras=True)
    callback.__annotations__ = hints
    out = []
    for name, par in inspect.signature(callback).parameters.items():
        hint, meta = hints.get(name), ()
        if typing.get_origin(hint) is typing.Annotated:
            hint, *meta = typing.get_args(hint)
        info = next((m for m in meta if isinstance(m, typer.models.ParameterInfo)), par.default)
        if not isinstance(info, typer.models.ParameterInfo):
            continue
        decls = [d for d in (info.default, *(info.param_decls or ()))
                 if isinstance(d, str) and d.startswith("--")]
        flag = decls[0].split("/")[0] if decls else "--" + name.replace("_", "-")
        out.append((flag if isinstance(info, typer.models.OptionInfo) else name, hint, info))
    return out


def unwrap(doc: str) -> str:
    """A docstring's paragraphs, each on one line (blank lines between them kept)."""
    return "\n\n".join(re.sub(r"\s*\n\s*", " ", p.strip())
                       for p in inspect.cleandoc(doc).split("\n\n"))


def tidy(app: typer.Typer) -> None:
    """Give every option of every command its metavar (flags none) and every command its
    docstring as paragraphs. Cheap: runs on every start, `--help` included."""
    for command in app.registered_commands:
        fn = command.callback
        if fn is None:
            continue
        if command.help is None and fn.__doc__:
            command.help = unwrap(fn.__doc__)
        for flag, hint, info in parameters(fn):
            if not isinstance(info, typer.models.OptionInfo) or info.metavar is not None:
                continue
            # A flag takes nothing: an empty metavar hides typer's `<bool>`.
            info.metavar = "" if hint is bool else METAVARS.get(flag)


def arguments() -> None:  # and flags
    """Show a required argument as `PATH...`, an optional one as `[PATH]` (typer 0.29 wraps
    a required one in braces, `{PATH}...`, read as a set of choices by anyone used to
    docopt or man pages), and no Python type beside an argument's name (`<list[str]>`):
    the name says what it takes. Private methods of the pinned typer: left alone on another."""
    from typer import core

    from .fastparams import PINNED_TYPER_VERSION

    if typer.__version__ != PINNED_TYPER_VERSION:  # pragma: no cover
        return

    def _usage_display_name(self: core.TyperArgument) -> str:
        name = self.display_name_raw
        if not self.required:
            name = f"[{name}]"
        if self.nargs != 1 and not name.endswith("..."):
            name += "..."
        return name

    def _display_type_rich(self: core.TyperArgument, ctx: object) -> None:
        return None

    stock_option_type = core.TyperOption.display_type_rich

    def _option_type_rich(self: core.TyperOption, ctx: object) -> str | None:
        # A flag takes no value; typer's own --help otherwise reads `--help <bool>`.
        return None if self.is_flag else stock_option_type(self, ctx)

    core.TyperArgument._usage_display_name = _usage_display_name  # type: ignore[method-assign]
    core.TyperArgument.display_type_rich = _display_type_rich  # type: ignore[method-assign,assignment]
    if not getattr(stock_option_type, "_p2p", False):
        _option_type_rich._p2p = True  # type: ignore[attr-defined]
        core.TyperOption.display_type_rich = _option_type_rich  # type: ignore[method-assign]
