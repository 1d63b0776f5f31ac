"""compose.yaml checked as data (Docker is not available everywhere): the services it needs,
references that resolve, and `vad` commands that the real CLI parser accepts."""

import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from vad.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def vad_argv(service: dict) -> list[str]:
    command = service["command"]
    if command[:2] == ["sh", "-c"]:  # a shell line: take its `vad ...` part
        command = shlex.split(command[2].split("||")[-1].replace("exec ", ""))
    assert command[0] == "vad", command
    return command[1:]


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_services_and_their_references(compose):
    services = compose["services"]
    assert {"kafka", "redis", "worker", "dashboard"} <= set(services)
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert spec["condition"] in ("service_started", "service_healthy",
                                         "service_completed_successfully")
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], dependency
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("/", ".", "$")):
                assert source in declared_volumes, f"{name}: undeclared volume {source}"
        if "build" in service:
            assert (REPO / service["build"] / "Dockerfile").is_file()


def test_kafka_is_the_official_image_in_kraft_mode(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in env)
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")


def test_vad_commands_parse_and_point_at_the_services(compose):
    services = compose["services"]
    parser = build_parser()
    registered = set(parser._subparsers._group_actions[0].choices)
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    kafka_address = urlparse(advertised.split(",")[0]).netloc
    worker = vad_argv(services["worker"])
    assert worker[0] == "serve" and option(worker, "--bootstrap") == kafka_address
    assert urlparse(option(worker, "--store")).hostname == "redis"
    assert services["worker"]["deploy"]["replicas"]
    dashboard = vad_argv(services["dashboard"])
    assert dashboard[0] == "dashboard"
    assert urlparse(option(dashboard, "--store")).hostname == "redis"
    # Exposed on 0.0.0.0, it needs operators' hashes from the host's environment.
    assert "--no-auth" not in dashboard
    assert services["dashboard"]["environment"]["VAD_DASHBOARD_USERS"] == "${VAD_DASHBOARD_USERS:-}"
    for name, service in services.items():
        if name in ("kafka", "redis"):
            continue
        argv = vad_argv(service)
        if argv[0] in registered:  # `vad dashboard` lands separately
            parser.parse_args([arg if "*" not in arg else "video.mp4" for arg in argv])


def test_dockerfile_copies_what_exists():
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source


def _has_docker_compose() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _has_docker_compose(), reason="docker compose is not installed")
def test_docker_compose_config_accepts_it():
    subprocess.run(["docker", "compose", "config", "--quiet"], cwd=REPO, check=True)
