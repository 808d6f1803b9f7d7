"""The docker compose deployment, checked without Docker: the compose file against the
Compose Specification's JSON schema (check-jsonschema's vendored copy), the Dockerfile with
hadolint, and the properties a deployment relies on (loopback ports, no default password,
health-gated start, read-only documents, the GPU profile wired to ingest)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
ENV_EXAMPLE = (ROOT / ".env.example").read_text()

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}; $$ is a literal $.
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<rule>:?[-?][^}]*)?\}")
# A short-syntax volume: SOURCE:TARGET[:MODE], where SOURCE may be a ${...} with colons inside.
MOUNT = re.compile(r"(?P<source>\$\{[^}]*\}|[^:]+):(?P<target>[^:]+)(?::(?P<mode>\w+))?")


def _mounts(service: dict) -> dict[str, re.Match]:
    """The service's volumes by target path."""
    return {m["target"]: m for m in (MOUNT.fullmatch(volume) for volume in service["volumes"])}


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_compose_file_follows_the_compose_specification():
    pytest.importorskip("check_jsonschema", reason="the compose check needs the test extras: pip install -e '.[test]'")
    checked = _run(sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                   str(COMPOSE_FILE))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_variable_the_compose_file_reads_is_well_formed_and_documented_in_env_example():
    text = COMPOSE_FILE.read_text().replace("$$", "")
    stray = re.sub(VARIABLE, "", text)
    assert "$" not in stray, f"a malformed variable reference: {stray[stray.index('$'):][:60]!r}"
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE, re.MULTILINE))
    assert {m["name"] for m in VARIABLE.finditer(text)} <= documented


def test_the_password_has_no_default_and_ports_are_published_on_loopback_only():
    text = COMPOSE_FILE.read_text()
    uses = [m for m in VARIABLE.finditer(text) if m["name"] == "POSTGRES_PASSWORD"]
    assert uses and all(m["rule"].startswith(":?") for m in uses)
    assert re.search(r"^POSTGRES_PASSWORD=$", ENV_EXAMPLE, re.MULTILINE)
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"


def test_the_database_is_pgvector_0_8_on_postgresql_17_with_a_volume_health_check_and_vector_sized_memory():
    db = SERVICES["db"]
    assert re.fullmatch(r"pgvector/pgvector:0\.8\.\d+-pg17", db["image"])
    assert _mounts(db)["/var/lib/postgresql/data"]["source"] in COMPOSE["volumes"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    settings = " ".join(db["command"])
    for setting in ("shared_buffers", "maintenance_work_mem", "max_parallel_maintenance_workers"):
        assert f"{setting}=" in settings


def test_ingest_is_built_here_waits_for_a_healthy_database_and_reads_the_documents_read_only():
    ingest = SERVICES["ingest"]
    assert (ROOT / ingest["build"]["context"] / "Dockerfile").is_file()
    assert ingest["depends_on"]["db"]["condition"] == "service_healthy"
    assert _mounts(ingest)["/docs"]["mode"] == "ro"
    assert "@db:5432/" in ingest["environment"]["DATABASE_URL"]
    assert re.search(r'^ENTRYPOINT \["ingest"\]\nCMD \["/docs"\]$', DOCKERFILE, re.MULTILINE)


def test_the_api_serves_the_same_image_health_checked_after_the_database_on_loopback():
    api, ingest = SERVICES["api"], SERVICES["ingest"]
    assert api["image"] == ingest["image"] and api["build"] == ingest["build"]
    assert api["entrypoint"] == ["pgkb"] and api["command"][:1] == ["serve"]
    assert api["depends_on"]["db"]["condition"] == "service_healthy"
    assert api["environment"]["DATABASE_URL"] == ingest["environment"]["DATABASE_URL"]
    assert "/v1/ready" in " ".join(api["healthcheck"]["test"])
    assert api["ports"] == ["127.0.0.1:${PGKB_API_PORT:-8000}:8000"]
    # The uploads volume is writable by the image's user.
    assert _mounts(api)["/data"]["source"] == "uploads" and "uploads" in COMPOSE["volumes"]
    assert "RUN mkdir /data && chown 10001:10001 /data" in DOCKERFILE


def test_the_gpu_profile_serves_the_model_ingest_uses_on_the_port_env_example_points_ingest_at():
    embedder, ingest = SERVICES["embedder"], SERVICES["ingest"]
    assert embedder["profiles"] == ["gpu"]
    devices = embedder["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in device["capabilities"] for device in devices)
    assert "/models" in _mounts(embedder) and _mounts(ingest)["/models"]["mode"] == "ro"
    # Started and waited for only when the profile is on: without it, ingest embeds itself.
    assert ingest["depends_on"]["embedder"] == {"condition": "service_healthy", "required": False}
    command = embedder["command"]
    served = command[command.index("--model-path") + 1]
    assert VARIABLE.fullmatch(served)["name"] == VARIABLE.fullmatch(ingest["environment"]["PGKB_MODEL"])["name"]
    gpu_block = ENV_EXAMPLE[ENV_EXAMPLE.index("COMPOSE_PROFILES=gpu"):]
    url = re.search(r"^# PGKB_EMBED_URL=(\S+)$", gpu_block, re.MULTILINE)[1]
    assert url == f"http://embedder:{command[command.index('--port') + 1]}"


def test_the_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (it comes with the test extras, except on Windows)")
    linted = _run(hadolint, "--config", str(ROOT / ".hadolint.yaml"), "Dockerfile")
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_image_runs_as_a_user_and_installs_torch_then_dependencies_then_the_code():
    lines = DOCKERFILE.splitlines()

    def first(prefix: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(prefix))

    assert re.findall(r"^USER (\S+)", DOCKERFILE, re.MULTILINE)[-1].split(":")[0] not in ("root", "0")
    # Each in its own layer, so a code edit reinstalls neither torch nor the dependencies.
    assert (first('RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}"')
            < first("COPY pyproject.toml") < first("COPY . .") < first("USER "))
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
