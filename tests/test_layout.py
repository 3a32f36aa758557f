"""The test suite's own rules: helpers live in tests/helpers (no test module imports another), the
markers are registered, ``make test`` selects everything, and the ``integration`` marker is right
by construction (tests/helpers/markers.py), checked on a throw-away suite in a child pytest."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def _imported_modules(path: Path) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the tests package
                base = "tests" if node.level == 1 else ""
                mod = ".".join(p for p in (base, node.module or "") if p)
            else:
                mod = node.module or ""
            out += [f"{mod}.{a.name}" for a in node.names] if mod == "tests" else [mod]
    return out


def test_no_test_module_imports_another_and_helpers_live_in_tests_helpers() -> None:
    offenders = {}
    for path in sorted(TESTS.glob("test_*.py")):
        bad = [m for m in _imported_modules(path) if m.startswith("tests") and not m.startswith("tests.helpers")]
        if bad:
            offenders[path.name] = bad
    assert not offenders, f"import helpers from tests.helpers, not from other test modules: {offenders}"
    loose = sorted(p.name for p in TESTS.glob("*.py") if not p.name.startswith("test_") and p.name not in ("conftest.py", "__init__.py"))
    assert not loose, f"helper modules belong in tests/helpers/: {loose}"


def test_markers_are_registered_and_make_test_selects_everything(pytestconfig: pytest.Config) -> None:
    registered = {line.split(":", 1)[0].strip() for line in pytestconfig.getini("markers")}
    assert {"integration", "slow", "browser"} <= registered
    addopts = shlex.split(" ".join(pytestconfig.getini("addopts")))
    assert "--strict-markers" in addopts  # a misspelt marker is an error, not a silent no-op
    assert not {"-m", "-k"} & set(addopts), "addopts must not deselect: `make test` runs every test"
    makefile = (REPO / "Makefile").read_text()
    test_cmd = re.search(r"^test:.*\n\t(.+)$", makefile, re.MULTILINE)
    assert test_cmd and "pytest" in test_cmd.group(1)
    pytest_args = shlex.split(test_cmd.group(1).split("pytest", 1)[1])
    assert not {"-m", "-k"} & set(pytest_args), test_cmd.group(1)


PROBE_CONFTEST = '''
import pytest

from tests.helpers.markers import _stack_guard, pytest_collection_modifyitems, pytest_runtest_call  # noqa: F401


@pytest.fixture(scope="session")
def local_stack():
    return "stand-in"  # no broker here: the marker follows the fixture, not what it starts


@pytest.fixture()
def stack_settings(local_stack):
    return local_stack
'''

PROBE_TESTS = '''
import socket

import pytest


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_pure():
    assert 1 + 1 == 2


def test_uses_the_stack(stack_settings):
    assert stack_settings == "stand-in"


def test_unmarked_redis_even_if_the_error_is_caught():
    import redis

    try:
        redis.Redis(port=closed_port(), socket_connect_timeout=0.5).ping()
    except Exception:
        pass


def test_unmarked_kafka_client():
    import kafka

    kafka.KafkaConsumer(bootstrap_servers=f"127.0.0.1:{closed_port()}")


def test_unmarked_local_stack():
    from devstack.stack import LocalStack

    LocalStack().start()


@pytest.mark.integration
def test_marked_redis():
    import redis

    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=closed_port(), socket_connect_timeout=0.5).ping()
'''


def _outcomes(tmp_path: Path, *args: str) -> tuple[dict[str, str], str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q", "--rootdir", str(tmp_path), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    pattern = r"^(PASSED|FAILED|ERROR) test_probe\.py::(\w+)"
    found = {m.group(2): m.group(1) for m in re.finditer(pattern, res.stdout, re.MULTILINE)}
    return found, res.stdout + res.stderr


@pytest.mark.timeout(240)
def test_integration_marker_follows_the_stack_and_unmarked_stack_use_fails(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(PROBE_CONFTEST)
    (tmp_path / "test_probe.py").write_text(PROBE_TESTS)

    pure, out = _outcomes(tmp_path, "-m", "not integration")
    assert pure == {
        "test_pure": "PASSED",
        "test_unmarked_redis_even_if_the_error_is_caught": "FAILED",
        "test_unmarked_kafka_client": "FAILED",
        "test_unmarked_local_stack": "FAILED",
    }, out  # the stack users are deselected: marked integration by their fixture
    assert out.count("not marked integration") >= 3, out
    for what in ("a Redis connection was opened", "a Kafka client (KafkaConsumer) was created", "a LocalStack was started"):
        assert what in out, out

    integration, out = _outcomes(tmp_path, "-m", "integration")
    assert integration == {"test_uses_the_stack": "PASSED", "test_marked_redis": "PASSED"}, out
