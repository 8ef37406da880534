"""The config file (issue 16, conveniences): signal servers, trackers, token, download folder
and upload limit, flags > environment > file > defaults, `[public]` and P2P_CONFIG as before,
and `p2p config` showing each effective setting and where it came from."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import P2P, ROOT

from p2pcli.config import DEFAULT_STUN, KEYS, resolve
from p2pcli.errors import UsageError

PATH = Path("/x/config.toml")


def test_the_environment_beats_the_file_and_the_file_beats_the_default() -> None:
    doc = {"signal": "http://file:1", "token": "t", "trackers": ["wss://a", "wss://b"],
           "max_upload_rate": 500000, "public": {"stun": ["stun:s:1"]}}
    got = resolve(doc, {"P2P_SIGNAL": "http://env:2", "P2P_TRACKERS": "wss://c,wss://d"}, PATH)
    assert (got["signal"].value, got["signal"].source, got["signal"].where) == (
        "http://env:2", "env", "P2P_SIGNAL")
    assert got["trackers"].value == ("wss://c", "wss://d") and got["trackers"].source == "env"
    assert (got["token"].value, got["token"].source, got["token"].where) == ("t", "file",
                                                                             str(PATH))
    assert got["max_upload_rate"].value == "500000"
    assert got["public.stun"].value == ("stun:s:1",)
    assert got["public.trackers"].source == "default" and got["download_dir"].value is None
    assert resolve(None, {}, PATH)["public.stun"].value == DEFAULT_STUN
    assert set(got) == set(KEYS)


@pytest.mark.parametrize(("doc", "message"), [
    ({"signl": "x"}, "unknown key signl (expected signal, trackers, token, download_dir, "
                     "max_upload_rate)"),
    ({"trackers": "wss://a"}, "trackers must be a list of strings"),
    ({"token": ["a"]}, "token must be a string"),
    ({"public": {"tracker": []}}, "unknown key public.tracker (expected trackers, stun)"),
])
def test_a_wrong_key_or_type_is_named(doc: dict, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        resolve(doc, {}, PATH)


def run(args: list[str], config: str | None, tmp_path: Path, **env: str
        ) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.toml"
    if config is not None:
        path.write_text(config)
    clean = {k: v for k, v in os.environ.items() if k not in {e.env for e in KEYS.values()}}
    return subprocess.run([P2P, *args], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**clean, "P2P_CONFIG": str(path), **env})


CONFIG = 'signal = "http://127.0.0.1:1"\ntoken = "s3cret"\n[public]\nstun = ["stun:s:1"]\n'


def test_p2p_config_says_where_each_setting_came_from(tmp_path: Path) -> None:
    out = run(["config"], CONFIG, tmp_path, P2P_MAX_UPLOAD_RATE="2M")
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[2:] if line.strip()}
    assert re.fullmatch(r"signal +file +http://127\.0\.0\.1:1", rows["signal"])
    assert re.fullmatch(r"max_upload_rate +env P2P_MAX_UPLOAD_RATE +2M", rows["max_upload_rate"])
    assert re.fullmatch(r"token +file +\(set\)", rows["token"])  # never the secret itself
    assert re.fullmatch(r"trackers +default +\(none\)", rows["trackers"])
    assert "s3cret" not in out.stdout and str(tmp_path / "config.toml") in out.stdout


def test_p2p_config_json(tmp_path: Path) -> None:
    out = run(["config", "--json"], CONFIG, tmp_path, P2P_SIGNAL="http://127.0.0.1:3")
    doc = json.loads(out.stdout)
    assert doc["exists"] and doc["file"] == str(tmp_path / "config.toml")
    s = doc["settings"]
    assert s["signal"] == {"value": "http://127.0.0.1:3", "source": "env", "where": "P2P_SIGNAL"}
    assert s["token"] == {"value": None, "set": True, "source": "file",
                          "where": str(tmp_path / "config.toml")}
    assert s["public.stun"]["value"] == ["stun:s:1"] and "s3cret" not in out.stdout
    missing = json.loads(run(["config", "--json"], None, tmp_path / "nowhere").stdout)
    assert not missing["exists"] and missing["settings"]["signal"]["source"] == "default"


@pytest.mark.parametrize(("args", "env", "port"), [
    ([], {}, 1),  # the file's server
    ([], {"P2P_SIGNAL": "http://127.0.0.1:3"}, 3),  # the variable beats the file
    (["--signal", "http://127.0.0.1:2"], {"P2P_SIGNAL": "http://127.0.0.1:3"}, 2),  # the flag
])
@pytest.mark.parametrize("mode", ["human", "json"])
def test_fetch_takes_its_signaling_server_flag_env_file_in_that_order(
        tmp_path: Path, args: list[str], env: dict[str, str], port: int, mode: str) -> None:
    out = run(["fetch", "ab" * 32, "--no-lan", "--retries", "1", "--timeout", "1", *args,
               *(["--json"] if mode == "json" else [])], CONFIG, tmp_path, **env)
    assert out.returncode == 4, out.stderr
    assert f"cannot reach the signaling server at http://127.0.0.1:{port} " in out.stderr


def test_seed_takes_its_upload_limit_from_the_file(tmp_path: Path) -> None:
    out = run(["seed", "README.md"], 'max_upload_rate = "nan"\n', tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("p2p: --max-upload-rate 'nan'")


def test_download_dir_must_be_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from p2p_cli.common import download_dir

    monkeypatch.setenv("P2P_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("P2P_DOWNLOAD_DIR", raising=False)
    assert download_dir() is None
    (tmp_path / "config.toml").write_text(f'download_dir = "{tmp_path}"\n')
    assert download_dir() == str(tmp_path)
    monkeypatch.setenv("P2P_DOWNLOAD_DIR", str(tmp_path / "missing"))
    with pytest.raises(UsageError, match="is not an existing folder"):
        download_dir()
