"""`p2p config`: the settings every command starts from, and where each came from."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer


def shown(value: Any, secret: bool) -> str:
    if value is None or value == ():
        return "(none)"
    if secret:
        return "(set)"
    return ", ".join(value) if isinstance(value, tuple) else str(value)


def register(app: typer.Typer) -> None:
    @app.command("config")
    def config_cmd(json: Annotated[bool, typer.Option(
            "--json", help="Print the settings as one JSON object on stdout.")] = False) -> None:
        """Show the effective settings (signal servers, trackers, token, download folder,
        upload limit, --public's servers) and where each came from: a flag given to a
        command wins, then the environment variable, then the config file, then the default.

        The file is config.toml in this platform's config folder (printed here), or the
        one P2P_CONFIG names; README's "Config file" section lists its keys.
        """
        import orjson

        from p2pcli.config import KEYS, load

        from .output import visible

        cfg = load()
        if json:
            out = {"file": str(cfg.path), "exists": cfg.exists, "settings": {
                k: {"value": None if KEYS[k].secret and s.value else
                    (list(s.value) if isinstance(s.value, tuple) else s.value),
                    **({"set": s.value is not None} if KEYS[k].secret else {}),
                    "source": s.source, **({"where": s.where} if s.where else {})}
                for k, s in cfg.settings.items()}}
            sys.stdout.write(orjson.dumps(out).decode() + "\n")
            return
        state = "" if cfg.exists else " (not there: no setting comes from a file)"
        lines = [f"config file  {visible(cfg.path)}{state}", ""]
        width = max(map(len, KEYS))
        origins = {k: {"env": f"env {s.where}"}.get(s.source, s.source)
                   for k, s in cfg.settings.items()}
        owidth = max(map(len, origins.values()))
        for key, s in cfg.settings.items():
            lines.append(f"{key:<{width}}  {origins[key]:<{owidth}}  "
                         f"{visible(shown(s.value, KEYS[key].secret))}")
        lines += ["", "A flag given to a command overrides all of these."]
        sys.stdout.write("\n".join(lines) + "\n")
