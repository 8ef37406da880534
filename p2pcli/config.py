"""The user's settings: flags > environment > config file > defaults, and where each came from.

One TOML file, `config.toml` in the platform's user config dir (platformdirs; on Linux
`~/.config/p2p/config.toml`), or the file P2P_CONFIG names:

    signal = "https://signal.example.org"     # several comma-separated, as --signal
    trackers = ["wss://tracker.example.org"]  # as --tracker / P2P_TRACKERS
    token = "s3cret"                          # as --token / P2P_TOKEN
    download_dir = "~/Downloads"              # where fetch writes when not to a pipe
    max_upload_rate = "2M"                    # as seed --max-upload-rate
    [public]                                  # what --public uses (p2pcli/publicnet.py)
    trackers = ["wss://tracker.example.org"]
    stun = ["stun:stun.example.org:3478"]

Typer gives a command its flag or, failing that, its environment variable; a command asks
`Config.value(key, given)` for the rest: the file's value, else the default. `resolve` is
the rule on plain data (a parsed document and an environment), so `p2p config` shows
exactly what a command would use. A missing file is no error; an unreadable or malformed
one is a usage error naming the file and the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError

DEFAULT_TRACKERS = (
    "wss://tracker.openwebtorrent.com",
    "wss://tracker.webtorrent.dev",
    "wss://tracker.btorrent.xyz",
    "wss://tracker.files.fm:7073/announce",
)
DEFAULT_STUN = ("stun:stun.l.google.com:19302",)


@dataclass(frozen=True)
class Key:
    env: str | None
    "The environment variable that sets it (the flag's, where a flag has one)."
    kind: str
    "str, or list (of strings)."
    default: Any
    doc: str
    secret: bool = False
    "Shown as set or not, never printed."


KEYS: dict[str, Key] = {
    "signal": Key("P2P_SIGNAL", "str", None, "signaling servers, comma-separated (--signal)"),
    "trackers": Key("P2P_TRACKERS", "list", (), "WebTorrent trackers (--tracker)"),
    "token": Key("P2P_TOKEN", "str", None, "signaling server token (--token)", secret=True),
    "download_dir": Key("P2P_DOWNLOAD_DIR", "str", None,
                        "where fetch writes when not to a pipe (default: the current folder)"),
    "max_upload_rate": Key("P2P_MAX_UPLOAD_RATE", "str", None,
                           "seed's upload limit (--max-upload-rate; default: unlimited)"),
    "public.trackers": Key(None, "list", DEFAULT_TRACKERS, "trackers --public announces to"),
    "public.stun": Key(None, "list", DEFAULT_STUN, "STUN servers --public uses"),
}


@dataclass(frozen=True)
class Setting:
    value: Any
    "str, tuple of str, or None (unset)."
    source: str
    "flag, env, file or default."
    where: str | None = None
    "The variable's name (env) or the file's path (file)."


def config_path(env: Mapping[str, str] | None = None) -> Path:
    override = (os.environ if env is None else env).get("P2P_CONFIG")
    if override:
        return Path(override)
    from platformdirs import user_config_path

    return user_config_path("p2p") / "config.toml"


def read_file(path: Path) -> dict[str, Any] | None:
    """The parsed file, None when there is none."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UsageError(f"cannot read the config file {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config file {path} is not valid TOML: {e}") from None


def file_values(doc: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The document's settings by key ('public.stun'), checked: a wrong type or an unknown
    key is a usage error (a typo would otherwise be ignored in silence)."""
    flat: dict[str, Any] = {}
    for name, value in doc.items():
        if name == "public":
            if not isinstance(value, dict):
                raise UsageError(f"config file {path}: [public] must be a table")
            for sub, v in value.items():
                flat[f"public.{sub}"] = v
        else:
            flat[name] = value
    out: dict[str, Any] = {}
    for key, value in flat.items():
        spec = KEYS.get(key)
        if spec is None:
            section, _, _ = key.rpartition(".")
            known = ", ".join(k.partition(".")[2] if section else k for k in KEYS
                              if (k.rpartition(".")[0] == section))
            raise UsageError(f"config file {path}: unknown key {key} (expected {known})")
        if spec.kind == "list" and (not isinstance(value, list)
                                    or not all(isinstance(v, str) for v in value)):
            raise UsageError(f"config file {path}: {key} must be a list of strings")
        if spec.kind == "str" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # max_upload_rate = 500000
        if spec.kind == "str" and not isinstance(value, str):
            raise UsageError(f"config file {path}: {key} must be a string")
        out[key] = tuple(value) if spec.kind == "list" else value
    return out


def resolve(doc: Mapping[str, Any] | None, env: Mapping[str, str], path: Path
            ) -> dict[str, Setting]:
    """Each key's value and source, environment before file before default."""
    values = file_values(doc or {}, path)
    out = {}
    for key, spec in KEYS.items():
        if spec.env and env.get(spec.env):
            raw = env[spec.env]
            value: Any = (tuple(v for v in raw.replace(",", " ").split() if v)
                          if spec.kind == "list" else raw)
            out[key] = Setting(value, "env", spec.env)
        elif key in values:
            out[key] = Setting(values[key], "file", str(path))
        else:
            out[key] = Setting(spec.default, "default")
    return out


@dataclass(frozen=True)
class Config:
    path: Path
    exists: bool
    settings: dict[str, Setting]

    def value(self, key: str, given: Any = None) -> Any:
        """What a command uses: `given` (its flag, or typer's reading of the variable) when
        there is one, else the file's value or the default."""
        if given is not None and given != [] and given != ():
            return given
        return self.settings[key].value


def load(env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    path = config_path(env)
    doc = read_file(path)
    return Config(path, doc is not None, resolve(doc, env, path))
