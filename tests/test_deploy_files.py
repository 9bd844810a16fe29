"""docker-compose.yml and the Dockerfile agree with the code: every command they run exists, every variable
they set is a real setting and is documented. We cannot run Docker here, so this is what keeps the files
honest when a module or a setting is renamed."""

from __future__ import annotations

import importlib.util
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from bot.settings import Settings
from model.serving.settings import WorkerSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
CONTRACT_COMMANDS = {"bot": ["python", "-m", "bot"], "worker": ["python", "-m", "model.worker"]}
BOT_VARIABLES = {name.upper() for name in Settings.model_fields}
WORKER_VARIABLES = {name.upper() for name in WorkerSettings.model_fields}
COMPOSE_VARIABLES = {"REDIS_PASSWORD"}  # read by compose itself, from .env
PASSWORD = "${REDIS_PASSWORD:?"  # interpolated, and compose refuses to start without it
_ASSIGNMENT = re.compile(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def documented_variables() -> tuple[set[str], str]:
    """Names assigned in .env.example (commented-out examples count)."""
    return set(_ASSIGNMENT.findall((ROOT / ".env.example").read_text())), ".env.example"


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the `- NAME=value` form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def runs_module(module: str) -> bool:
    """`python -m module` works from this checkout: a module of ours, or a package with __main__."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or ROOT not in Path(spec.origin).resolve().parents:
        return False
    if spec.submodule_search_locations:  # a package: needs __main__.py
        return importlib.util.find_spec(f"{module}.__main__") is not None
    return "__main__" in Path(spec.origin).read_text()


def test_services_run_the_contract_commands(compose):
    services = compose["services"]
    assert set(services) == {"redis", "worker", "bot"}
    for name, command in CONTRACT_COMMANDS.items():
        assert services[name]["command"] == command
        assert runs_module(command[2]), f"{name}: `python -m {command[2]}` does not exist"
        assert services[name]["build"] == "." and services[name]["env_file"] == ".env"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["bot"]["image"] == services["worker"]["image"]  # one image for both


def test_every_variable_is_a_real_setting_and_documented(compose):
    documented, where = documented_variables()
    owners = {"bot": BOT_VARIABLES, "worker": WORKER_VARIABLES}
    named = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))  # interpolations, if any
    for service, settings in owners.items():
        env = environment_of(compose["services"][service])
        unknown = set(env) - settings
        assert not unknown, f"{service} sets variables it does not read: {sorted(unknown)}"
        named |= set(env)
    assert named <= BOT_VARIABLES | WORKER_VARIABLES | COMPOSE_VARIABLES
    missing = named - documented
    assert not missing, f"not listed in {where}: {sorted(missing)}"


def test_worker_reserves_a_gpu_and_drains_before_it_is_killed(compose):
    worker = compose["services"]["worker"]
    [device] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert device.get("count") == 1 or len(device.get("device_ids", [])) == 1  # one worker per GPU
    grace = worker["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > WorkerSettings.model_fields[
        "worker_drain_timeout_s"
    ].default, "docker would SIGKILL the worker before it hands its jobs back"


def test_ports_match_the_settings(compose):
    worker_env = environment_of(compose["services"]["worker"])
    bot = compose["services"]["bot"]
    bot_env = environment_of(bot)
    assert worker_env["WORKER_METRICS_PORT"] in compose["services"]["worker"]["expose"]
    assert bot_env["METRICS_PORT"] in bot["expose"]
    assert any(p.endswith(f":{bot_env['WEBHOOK_PORT']}") for p in bot["ports"])
    # 127.0.0.1 by default, unreachable from another container: inside compose's network, every address
    assert bot_env["METRICS_HOST"] == bot_env["WEBHOOK_HOST"] == worker_env["WORKER_METRICS_HOST"] == "0.0.0.0"
    assert all(p.startswith("127.0.0.1:") for p in bot["ports"])  # published on this host only, for the proxy
    redis_command = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in redis_command and "noeviction" in redis_command


def test_redis_needs_a_password_and_every_client_has_it(compose):
    """Whoever reaches Redis reads every dialog and picture and can queue jobs: compose sets requirepass, and
    every REDIS_URL (and the healthcheck's redis-cli) carries the same password."""
    services = compose["services"]
    redis = services["redis"]
    command = redis["command"]
    assert command[command.index("--requirepass") + 1].startswith(PASSWORD)
    assert environment_of(redis)["REDISCLI_AUTH"].startswith(PASSWORD)  # redis-cli ping authenticates
    assert "ping" in redis["healthcheck"]["test"]
    urls = {name: environment_of(s)["REDIS_URL"] for name, s in services.items() if "REDIS_URL" in environment_of(s)}
    assert set(urls) == {"bot", "worker"}
    for name, url in urls.items():
        assert url.startswith("redis://:" + PASSWORD) and url.endswith("@redis:6379/0"), name
    assert "REDIS_PASSWORD" in documented_variables()[0]


def test_dockerfile_installs_the_project_and_runs_the_bot():
    text = DOCKERFILE.read_text()
    lines = [line.strip() for line in text.replace("\\\n", " ").splitlines() if not line.startswith("#")]
    base = next(line for line in lines if line.startswith("FROM "))
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert base.startswith("FROM python:3.11") and requires == ">=3.11"
    copied = [shlex.split(line)[1] for line in lines if line.startswith("COPY ")]
    for path in copied:
        if path != "pyproject.toml README.md":
            assert (ROOT / path).exists(), f"COPY {path}: no such path"
    assert {"bot", "model", "training", "pyproject.toml"} <= {p for line in lines if line.startswith("COPY ")
                                                              for p in shlex.split(line)[1:-1]}
    assert any(line == "RUN pip install ." for line in lines)
    cmd = next(line for line in lines if line.startswith("CMD "))
    assert yaml.safe_load(cmd[4:]) == CONTRACT_COMMANDS["bot"]


def test_dockerfile_torch_pins_match_the_project():
    pins = dict(
        re.findall(r"\b(torch|torchvision)==([\w.+]+)", " ".join(
            tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        ))
    )
    assert dict(re.findall(r"\b(torch|torchvision)==([\w.+]+)", DOCKERFILE.read_text())) == pins


def test_secrets_and_local_state_stay_out_of_the_image():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git", "checkpoints"} <= set(ignored)


def test_the_local_bot_api_test_double_stays_out_of_the_image():
    ignored = (ROOT / ".dockerignore").read_text().split()
    copied = [line.split()[1] for line in DOCKERFILE.read_text().splitlines() if line.startswith("COPY ")]
    assert "local_bot_api" in ignored and not any(path.startswith("local_bot_api") for path in copied)


def test_the_license_is_an_spdx_string_for_a_setuptools_that_reads_it():
    """A license table makes setuptools >= 77 print a deprecation banner on every install."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in pyproject["build-system"]["requires"]
