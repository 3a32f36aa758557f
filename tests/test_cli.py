"""The command line as an operator meets it: ``spillwatch`` run as a subprocess.

- ``--version`` and ``--help`` (even with a broken configuration);
- ``config check``: exit 0 and one line when valid; exit 2 and ONE line on stderr naming the setting
  and where it came from (file or environment variable) when not, never a traceback; every service
  command says the same on a bad configuration;
- every command that needs the broker or Redis, started with nothing listening, prints one line
  naming the fix (``spillwatch stack up``, or ``--local`` where the command has it) and exits 1;
- the conventions (``--out FILE``, ``--json``, ``--true/--false``, ``--speed``): old spellings still
  work with one ``deprecated:`` line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import free_port
from spillwatch.settings import REPO_ROOT, Settings
from spillwatch.supervisor import child_env

CLIP = REPO_ROOT / "samples" / "clips" / "spill.mp4"


def spillwatch(args: list[str], tmp: Path, *, config: str | None = None, env: dict[str, str] | None = None,
               timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``spillwatch ARGS`` with no SPILLWATCH_* variable but ``env`` (and ``SPILLWATCH_CONFIG`` = a
    file holding ``config``), working directory ``tmp``."""
    cfg = None
    if config is not None:
        cfg = tmp / f"config-{abs(hash((config, tuple(args)))) % 10**8}.yml"
        cfg.write_text(config)
    extra = {"SPILLWATCH_DATA_DIR": str(tmp / "var"), **(env or {})}
    full = child_env(cfg, extra)
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "spillwatch.cli", *args], env=full, cwd=tmp, capture_output=True,
                          text=True, timeout=timeout_s, check=False)


def one_line_error(r: subprocess.CompletedProcess[str], code: int) -> str:
    """The single stderr line of a failed command (no traceback, no log noise)."""
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code and len(lines) == 1, f"rc={r.returncode} stderr:\n{r.stderr[-3000:]}"
    return lines[0]


# ---------------------------------------------------------------------------- version and help


def test_version(tmp_path: Path) -> None:
    from spillwatch.cli import package_version

    r = spillwatch(["--version"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"spillwatch {package_version()}" and package_version() != ""


@pytest.mark.parametrize("args", [["--help"], ["worker", "--help"], ["config", "check", "--help"], ["replay", "--help"]])
def test_help_never_needs_a_valid_config(tmp_path: Path, args: list[str]) -> None:
    for env in ({"SPILLWATCH_CONFIG": "/nonexistent/spillwatch.yml"}, {"SPILLWATCH_AGREGATOR__WINDOW": "3"}):
        r = spillwatch(args, tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        assert "Usage" in r.stdout and "Traceback" not in r.stderr


# ---------------------------------------------------------------------------- config check

CAMERA = f"cameras:\n  - id: dock-1\n    source: {CLIP}\n"


def test_config_check_valid(tmp_path: Path) -> None:
    r = spillwatch(["config", "check"], tmp_path, config=CAMERA + "aggregator:\n  window: 5\n  confirm_k: 3\n",
                   env={"SPILLWATCH_REDIS__URL": "redis://:hunter2@127.0.0.1:16379/0"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("config ok (config file ") and "1 camera(s)" in lines[0]
    assert "hunter2" not in r.stdout  # a password in a URL is never printed


BAD_CONFIGS: dict[str, tuple[str | None, dict[str, str], list[str]]] = {
    # name: (YAML or None, environment, what the one line must name)
    "misspelt key (file)": ("aggregator:\n  confrim_k: 3\n", {}, ["aggregator.confrim_k", "(config file ", "unknown setting"]),
    "misspelt key (env)": (None, {"SPILLWATCH_AGGREGATOR__CONFRIM_K": "3"},
                           ["aggregator.confrim_k", "(environment SPILLWATCH_AGGREGATOR__CONFRIM_K)", "unknown setting"]),
    "misspelt section (file)": ("agregator:\n  window: 3\n", {}, ["agregator", "(config file ", "unknown setting"]),
    "misspelt section (env)": (None, {"SPILLWATCH_AGREGATOR__WINDOW": "3"},
                               ["agregator", "(environment SPILLWATCH_AGREGATOR__WINDOW)", "unknown section"]),
    "invalid value (file)": (CAMERA + "    fps: -1\n", {}, ["cameras.0.fps", "(config file ", "greater than 0"]),
    "invalid value (env)": (None, {"SPILLWATCH_AGGREGATOR__WINDOW": "five"}, ["aggregator.window", "(environment SPILLWATCH_AGGREGATOR__WINDOW)"]),
    "unknown inference split (env)": (None, {"SPILLWATCH_WORKER__INFERENCE_SPLIT": "lanes"},
                                      ["worker.inference_split", "(environment SPILLWATCH_WORKER__INFERENCE_SPLIT)", "'batch' or 'operators'"]),
    "take too large (env)": (None, {"SPILLWATCH_WORKER__BATCH_SIZE": "3200"},
                             ["worker.batch_size", "(environment SPILLWATCH_WORKER__BATCH_SIZE)", "less than or equal to 1024"]),
    "inference run too large (file)": ("worker:\n  inference_batch: 800\n", {},
                                       ["worker.inference_batch", "(config file ", "less than or equal to 256"]),
    "list not JSON (env)": (None, {"SPILLWATCH_ALERTING__CHANNELS": "console"},
                            ["alerting.channels", "(environment SPILLWATCH_ALERTING__CHANNELS)", "JSON"]),
    "confirm_k > window (file)": ("aggregator:\n  window: 2\n  confirm_k: 3\n", {},
                                  ["aggregator.confirm_k", "(config file ", "3 > aggregator.window 2"]),
    "confirm_k > window (env over file)": ("aggregator:\n  window: 4\n", {"SPILLWATCH_AGGREGATOR__CONFIRM_K": "5"},
                                           ["aggregator.confirm_k", "(environment SPILLWATCH_AGGREGATOR__CONFIRM_K)", "5 > aggregator.window 4"]),
    "confirm_k > window (camera)": (CAMERA + "    window: 2\n", {},
                                    ["cameras.0", "(config file ", "camera dock-1", "confirm_k 3 (aggregator.confirm_k) > window 2 (cameras.0.window)"]),
    "missing config file": (None, {"SPILLWATCH_CONFIG": "/nonexistent/spillwatch.yml"},
                            ["config file /nonexistent/spillwatch.yml (SPILLWATCH_CONFIG)", "no such file"]),
    "malformed YAML": ("aggregator: [\n  window: 5\n", {}, ["config file ", "line 3", "not valid YAML"]),
    "not a mapping": ("- kafka\n- redis\n", {}, ["config file ", "must be a mapping"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_config_check_rejects(tmp_path: Path, case: str) -> None:
    yaml_text, env, expected = BAD_CONFIGS[case]
    r = spillwatch(["config", "check"], tmp_path, config=yaml_text, env=env)
    line = one_line_error(r, 2)
    assert line.startswith("spillwatch: config error: ") and r.stdout == ""
    for part in expected:
        assert part in line, f"{part!r} not in {line!r}"


@pytest.mark.parametrize("command", [["worker"], ["aggregator"], ["alerting"], ["produce"], ["archiver"], ["init-topics"]])
def test_service_commands_report_a_bad_config_in_one_line(tmp_path: Path, command: list[str]) -> None:
    r = spillwatch(command, tmp_path, config=CAMERA + "aggregator:\n  confrim_k: 3\n")
    line = one_line_error(r, 2)
    assert line.startswith("spillwatch: config error: aggregator.confrim_k (config file ")


def test_alerting_channel_without_its_address_is_a_config_error(tmp_path: Path) -> None:
    r = spillwatch(["alerting"], tmp_path, env={"SPILLWATCH_ALERTING__CHANNELS": '["webhook"]'})
    line = one_line_error(r, 2)
    assert "alerting.channels (environment SPILLWATCH_ALERTING__CHANNELS)" in line and "alerting.webhook_url" in line


# ---------------------------------------------------------------------------- nothing listening


def _nothing_listening(tmp: Path) -> dict[str, str]:
    return {"SPILLWATCH_KAFKA__BOOTSTRAP": f"127.0.0.1:{free_port()}", "SPILLWATCH_REDIS__URL": f"redis://127.0.0.1:{free_port()}/0"}


STACK_UP = "`spillwatch stack up`"
UNREACHABLE: dict[str, tuple[list[str], list[str]]] = {
    # name: (arguments, what the one line must say)
    "ack": (["ack", "inc-1", "--force"], ["cannot reach Redis", STACK_UP]),
    "alerts tail": (["alerts", "tail", "--wait", "1"], ["Kafka broker", "not ready after 1s", STACK_UP]),
    "init-topics": (["init-topics", "--wait", "1"], ["Kafka broker", "not ready after 1s", STACK_UP]),
    "worker": (["worker", "--wait", "1"], ["Kafka broker", "not ready after 1s", STACK_UP]),
    "aggregator": (["aggregator", "--wait", "1"], ["Kafka broker", "not ready after 1s", STACK_UP]),
    "alerting": (["alerting", "--wait", "1"], ["Kafka broker", "not ready after 1s", STACK_UP]),
    "produce": (["produce", "--wait", "1"], ["Kafka broker", "not ready after 1s", STACK_UP]),
    "archiver": (["archiver", "--wait", "1"], ["Kafka broker", "not ready after 1s", STACK_UP]),
    "replay": (["replay", "--video", str(CLIP), "--out", "r.json"], ["Kafka broker", "`--local`", STACK_UP]),
    "models compare --replay": (["models", "compare", "a.onnx", "b.onnx", "--manifest", "m.jsonl", "--out", "c.json", "--replay"],
                                ["Kafka broker", "`--local`"]),
    "bench pipeline --no-local": (["bench", "pipeline", "--no-local"], ["Kafka broker", "`--local`"]),
    "stack status": (["stack", "status"], ["not running", STACK_UP]),
}


@pytest.mark.parametrize("case", sorted(UNREACHABLE))
def test_commands_without_broker_or_redis_say_so_in_one_line(tmp_path: Path, case: str) -> None:
    args, expected = UNREACHABLE[case]
    r = spillwatch(args, tmp_path, config=CAMERA, env=_nothing_listening(tmp_path))
    line = one_line_error(r, 1)
    for part in expected:
        assert part in line, f"{part!r} not in {line!r}"


@pytest.mark.integration
@pytest.mark.parametrize("command", [["aggregator", "--wait", "1"], ["alerting", "--wait", "1"]])
def test_broker_up_redis_down_names_redis(stack_settings: Settings, tmp_path: Path, command: list[str]) -> None:
    env = {"SPILLWATCH_KAFKA__BOOTSTRAP": stack_settings.kafka.bootstrap, "SPILLWATCH_REDIS__URL": f"redis://127.0.0.1:{free_port()}/0"}
    line = one_line_error(spillwatch(command, tmp_path, env=env), 1)
    assert "Redis at redis://127.0.0.1:" in line and "not ready after 1s" in line and STACK_UP in line


@pytest.mark.integration
def test_worker_with_a_missing_model_is_a_config_error(stack_settings: Settings, tmp_path: Path) -> None:
    env = {"SPILLWATCH_KAFKA__BOOTSTRAP": stack_settings.kafka.bootstrap, "SPILLWATCH_REDIS__URL": stack_settings.redis.url,
           "SPILLWATCH_KAFKA__TOPIC_PREFIX": stack_settings.kafka.topic_prefix,
           "SPILLWATCH_WORKER__MODEL_PATH": str(tmp_path / "missing.onnx")}
    line = one_line_error(spillwatch(["worker", "--wait", "5"], tmp_path, env=env), 2)
    assert "worker.model_path (environment SPILLWATCH_WORKER__MODEL_PATH)" in line


# ---------------------------------------------------------------------------- conventions and old spellings


def test_legacy_json_file_argument_becomes_out(capsys: pytest.CaptureFixture[str]) -> None:
    from spillwatch.cli import legacy_argv

    assert legacy_argv(["evaluate", "--manifest", "m", "--json", "x.json"]) == ["evaluate", "--manifest", "m", "--out", "x.json"]
    assert legacy_argv(["--log-level", "DEBUG", "bench", "model", "--json=x.json"]) == [
        "--log-level", "DEBUG", "bench", "model", "--out", "x.json"]
    assert capsys.readouterr().err.splitlines() == ["deprecated: use --out FILE instead of --json FILE"] * 2
    for unchanged in (["evaluate", "--json", "--manifest", "m"], ["alerts", "tail", "--json"], ["stack", "status", "--json"],
                      ["evaluate", "--manifest", "m", "--json"]):
        assert legacy_argv(unchanged) == unchanged
    assert capsys.readouterr().err == ""


def test_old_and_new_spelling_together_is_a_usage_error(tmp_path: Path) -> None:
    r = spillwatch(["demo", "--out", "a.json", "--report", "b.json"], tmp_path)
    assert r.returncode == 2 and "--report is the old spelling of --out" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args,hidden", [(["replay", "--help"], ["--report", "--timeout-s"]), (["demo", "--help"], ["--report"]),
                                         (["produce", "--help"], ["--fast", "--realtime", "--stats-json"]),
                                         (["ack", "--help"], ["--label"]), (["evaluate", "--help"], ["--report "]),
                                         (["bench", "pipeline", "--help"], ["--embedded"])])
def test_old_spellings_are_hidden_from_help(tmp_path: Path, args: list[str], hidden: list[str]) -> None:
    r = spillwatch(args, tmp_path, env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    for h in hidden:
        assert h not in r.stdout, f"{h} in `spillwatch {' '.join(args)}`"


def _stats(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_produce_old_spellings_still_work(stack_settings: Settings, tmp_path: Path) -> None:
    """``produce --fast --stats-json F`` (old) == ``produce --speed 0 --out F`` (new), plus two
    ``deprecated`` lines."""
    from tests.helpers import run_cli

    s = stack_settings.model_copy(update={"cameras": Settings(cameras=[{"id": "m1", "source": str(CLIP)}]).cameras})
    new, old = tmp_path / "new.json", tmp_path / "old.json"
    r_new = run_cli(s, ["produce", "--speed", "0", "--max-frames", "3", "--out", str(new)], tmp_path)
    r_old = run_cli(s, ["produce", "--fast", "--max-frames", "3", "--stats-json", str(old)], tmp_path)
    assert r_new.returncode == 0 and r_old.returncode == 0, r_old.stderr[-2000:]
    assert "deprecated" not in r_new.stderr
    deprecations = [ln for ln in r_old.stderr.splitlines() if ln.startswith("deprecated:")]
    assert deprecations == ["deprecated: use --speed 0 instead of --fast", "deprecated: use --out instead of --stats-json"]
    assert _stats(new)["m1"]["published"] == _stats(old)["m1"]["published"] == 3


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_ack_verdict_and_its_old_spelling(stack_settings: Settings, tmp_path: Path, redis_client: Any) -> None:
    from alerting.acks import AckStore
    from tests.helpers import run_cli

    r = run_cli(stack_settings, ["ack", "inc-1", "--force", "--by", "jo", "--true"], tmp_path)
    assert r.returncode == 0 and "label=true" in r.stdout, r.stderr
    r = run_cli(stack_settings, ["ack", "inc-2", "--force", "--by", "jo", "--label", "false"], tmp_path)
    assert r.returncode == 0 and "label=false" in r.stdout, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "deprecated: use --true/--false instead of --label"
    acks = AckStore(redis_client, stack_settings.redis.key_prefix, 3600)
    assert [acks.get(i).label for i in ("inc-1", "inc-2")] == ["true", "false"]  # type: ignore[union-attr]
