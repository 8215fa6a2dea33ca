"""The deployment files: Dockerfile, docker-compose.yml and the Kubernetes manifests.

No container runs here (there is no engine on the test machines); what can be checked without
one is checked for real: the compose file by `docker compose config` itself, every Kubernetes
document against the Kubernetes API schemas, and every setting name against ``Settings``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import typer
import yaml

from cairn.cli import Service
from cairn.cli import app as cli_app
from cairn.settings import Settings
from tests.servers.compose import compose_command
from tests.servers.processes import ServerSetupError

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"

# Oldest Kubernetes release the manifests support, and the newest schema the validator has.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
IMAGE = "ghcr.io/cairn-data/cairn"
USER_ID = 10001
SERVICE_PORTS = {"catalogue": 8001, "featurestore": 8002, "ui": 8080}
SETTING_NAMES = frozenset(f"CAIRN_{name.upper()}" for name in Settings.model_fields)


# --- helpers -----------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_env(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}#{i}", doc)
        for path in k8s_files()
        for i, doc in enumerate(yaml.safe_load_all(path.read_text()))
        if doc is not None
    ]


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


def validate_k8s(doc: dict[str, Any], version: str) -> None:
    """Raises ``kubernetes_validate.ValidationError`` unless ``doc`` fits the API schema."""
    kubernetes_validate.validate(doc, version, strict=True)


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def workloads() -> list[dict[str, Any]]:
    return k8s_kind("Deployment") + k8s_kind("CronJob")


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split into build stages."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    stages: list[list[str]] = []
    for instruction in instructions:
        if instruction.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def instructions(stage: list[str], keyword: str) -> list[str]:
    return [i[len(keyword) :].strip() for i in stage if i.upper().startswith(keyword + " ")]


# --- docker-compose.yml ------------------------------------------------------------------------


def test_compose_has_the_six_services_and_named_volumes() -> None:
    data = compose()
    services = {k: v for k, v in data["services"].items() if not v.get("profiles")}
    assert set(services) == {"mongo", "elasticsearch", "catalogue", "featurestore", "ui", "crawler"}
    assert set(data["volumes"]) >= {"mongo-data", "es-data", "featurestore-data", "crawler-data"}
    assert "mongo-data:/data/db" in services["mongo"]["volumes"]
    assert "es-data:/usr/share/elasticsearch/data" in services["elasticsearch"]["volumes"]
    assert "featurestore-data:/data" in services["featurestore"]["volumes"]
    assert "crawler-data:/data" in services["crawler"]["volumes"]


def test_compose_images_are_pinned() -> None:
    services = compose()["services"]
    assert services["mongo"]["image"] == "mongo:8.0"
    assert services["elasticsearch"]["image"] == (
        "docker.elastic.co/elasticsearch/elasticsearch:8.19.21"
    )
    for name in ("catalogue", "featurestore", "ui", "crawler"):
        service = services[name]
        assert service["image"] == "cairn:0.1.0", name
        assert service["build"]["context"] == "."


@pytest.mark.parametrize("name", ["mongo", "elasticsearch", "catalogue", "featurestore", "ui"])
def test_compose_long_running_services_have_healthchecks(name: str) -> None:
    check = compose()["services"][name]["healthcheck"]
    assert not check.get("disable")
    assert check["test"][0] == "CMD"
    assert {"interval", "timeout", "retries"} <= set(check)


def test_compose_crawler_has_no_disabled_healthcheck() -> None:
    # `docker compose up --wait` fails on a container whose health check is disabled
    # ("has no healthcheck configured"); without one it waits for the container to run.
    assert "healthcheck" not in compose()["services"]["crawler"]


def test_compose_healthchecks_probe_the_right_things() -> None:
    services = compose()["services"]
    assert services["mongo"]["healthcheck"]["test"][1:] == [
        "mongosh",
        "--quiet",
        "--eval",
        "db.adminCommand('ping').ok",
    ]
    es_test = services["elasticsearch"]["healthcheck"]["test"]
    assert es_test[1] == "curl" and "--fail" in es_test
    assert "_cluster/health?wait_for_status=yellow" in es_test[-1]
    for name, port in SERVICE_PORTS.items():
        probe = services[name]["healthcheck"]["test"]
        # No curl in the slim image: the probe is Python's own urllib, on the service's port.
        assert probe[1:3] == ["python", "-c"], name
        assert f"http://127.0.0.1:{port}/readyz" in probe[3], name


@pytest.mark.parametrize(
    ("name", "needs"),
    [
        ("catalogue", {"mongo", "elasticsearch"}),
        ("featurestore", {"mongo", "catalogue"}),
        ("ui", {"catalogue", "featurestore"}),
        ("crawler", {"catalogue"}),
    ],
)
def test_compose_waits_for_healthy_dependencies(name: str, needs: set[str]) -> None:
    depends_on = compose()["services"][name]["depends_on"]
    assert set(depends_on) == needs
    for dependency in needs:
        assert depends_on[dependency]["condition"] == "service_healthy", (name, dependency)


def test_compose_services_listen_inside_and_publish_on_loopback() -> None:
    services = compose()["services"]
    for name, port in SERVICE_PORTS.items():
        service = services[name]
        env = compose_env(service)
        prefix = f"CAIRN_{name.upper()}"
        assert env[f"{prefix}_HOST"] == "0.0.0.0", name
        assert int(env[f"{prefix}_PORT"]) == port, name
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"], name
        assert service["command"] == ["serve", name]
        assert name in {s.value for s in Service}
    for name in ("mongo", "elasticsearch", "crawler"):
        assert "ports" not in services[name], f"{name} must not be published"


def test_compose_wires_the_mongo_backend() -> None:
    services = compose()["services"]
    for name in ("catalogue", "featurestore", "ui", "crawler"):
        env = compose_env(services[name])
        assert env["CAIRN_BACKEND"] == "mongo"
        assert env["CAIRN_MONGO_URL"] == "mongodb://mongo:27017"
        assert env["CAIRN_ES_URL"] == "http://elasticsearch:9200"
        assert env["CAIRN_CATALOGUE_URL"] == "http://catalogue:8001"
        assert env["CAIRN_FEATURESTORE_URL"] == "http://featurestore:8002"
        assert env["CAIRN_DATA_DIR"] == "/data"
    es_env = compose_env(services["elasticsearch"])
    assert es_env["discovery.type"] == "single-node"
    assert es_env["xpack.security.enabled"] == "false"
    assert es_env["ES_JAVA_OPTS"] == "-Xms512m -Xmx512m"


def test_compose_crawler_crawls_the_mounted_lake_on_a_schedule() -> None:
    crawler = compose()["services"]["crawler"]
    assert "./examples/lake:/volumes/lake:ro" in crawler["volumes"]
    assert (ROOT / "examples" / "lake").is_dir()
    command = crawler["command"]
    assert command[:2] == ["crawl", "/volumes/lake"]
    # Every option the compose file passes is a real option of `cairn crawl`.
    crawl = typer.main.get_command(cli_app).commands["crawl"]  # type: ignore[attr-defined]
    known = {opt for param in crawl.params for opt in param.opts}
    options = [arg for arg in command[2:] if arg.startswith("--")]
    assert options == ["--every"]
    assert set(options) <= known
    assert command[command.index("--every") + 1] == "15m"


def test_compose_s3_profile_adds_an_s3_store_and_leaves_the_default_stack_alone() -> None:
    services = compose()["services"]
    store = services["seaweedfs"]
    assert store["profiles"] == ["s3"]
    assert store["image"] == "chrislusf/seaweedfs:3.80"
    assert "-s3" in store["command"] and "-s3.port=8333" in store["command"]
    assert "ports" not in store  # the compose network only: it checks no keys
    assert store["healthcheck"]["test"][0] == "CMD"
    # The feature store takes the blob store settings from the shell or .env, unset by default
    # (so the default stack keeps its tables on the featurestore-data volume).
    env = compose_env(services["featurestore"])
    for name in (
        "CAIRN_BLOBS_URL",
        "CAIRN_S3_ENDPOINT",
        "CAIRN_S3_ADDRESSING_STYLE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ):
        assert env[name] is None, name
    assert "seaweedfs" not in services["featurestore"]["depends_on"]
    # The .env lines the header gives name real settings and the profile's endpoint.
    header = COMPOSE.read_text().split("\nname:", 1)[0]
    assert "COMPOSE_PROFILES=s3" in header
    assert "CAIRN_S3_ENDPOINT=http://seaweedfs:8333" in header
    for name in re.findall(r"(CAIRN_[A-Z_]+)=", header):
        assert name in SETTING_NAMES, name


def test_compose_api_keys_pass_through_from_the_environment() -> None:
    """Keys come from the shell or .env; when unset there, they stay unset (writes open)."""
    anchor = compose()["x-cairn"]["environment"]
    assert anchor["CAIRN_API_KEYS"] is None
    assert anchor["CAIRN_API_KEY"] is None


def test_compose_documents_every_environment_variable() -> None:
    lines = COMPOSE.read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        match = re.match(r"\s+(CAIRN_[A-Z_]+|ES_JAVA_OPTS|[a-z]+\.[a-z.]+):", line)
        if match is None:
            continue
        # A comment right above, or above the run of variables it explains.
        j = i - 1
        while j >= 0 and re.match(r"\s+(CAIRN_[A-Z_]+|[a-z.]+):", lines[j]):
            j -= 1
        if not lines[j].lstrip().startswith("#"):
            undocumented.append(match.group(1))
    assert undocumented == []


def run_compose(command: list[str], file: Path, *args: str) -> subprocess.CompletedProcess:
    # Without the runner's own CAIRN_* variables, so the pass-through keys are unset.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    return subprocess.run(
        [*command, "-f", str(file), "config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def test_compose_config_is_accepted_by_docker_compose(tmp_path: Path) -> None:
    try:
        command = compose_command()
    except ServerSetupError as exc:
        pytest.fail(f"Docker Compose could not be set up: {exc}", pytrace=False)
    result = run_compose(command, COMPOSE, "--format", "json")
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    # Services of a profile are left out unless the profile is asked for.
    default = {k for k, v in compose()["services"].items() if not v.get("profiles")}
    assert set(resolved["services"]) == default
    with_s3 = run_compose([*command, "--profile", "s3"], COMPOSE, "--format", "json")
    assert with_s3.returncode == 0, with_s3.stderr
    assert set(json.loads(with_s3.stdout)["services"]) == default | {"seaweedfs"}
    lake = resolved["services"]["crawler"]["volumes"][0]
    assert lake["source"] == str(ROOT / "examples" / "lake")
    assert lake["read_only"] is True
    # Unset in the environment, the API keys stay null (left unset in the container), not "".
    catalogue_env = resolved["services"]["catalogue"]["environment"]
    assert catalogue_env["CAIRN_API_KEYS"] is None
    assert catalogue_env["CAIRN_API_KEY"] is None
    quiet = run_compose(command, COMPOSE, "-q")
    assert quiet.returncode == 0, quiet.stderr
    # The check bites: an unknown dependency condition is refused.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE.read_text().replace("condition: service_healthy", "condition: service_happy", 1)
    )
    assert run_compose(command, broken, "-q").returncode != 0


# --- settings names used anywhere in the deployment files --------------------------------------


def deployment_setting_names() -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}

    def add(name: str, where: str) -> None:
        if name.startswith("CAIRN_"):
            names.setdefault(name, set()).add(where)

    data = compose()
    for name in compose_env(data["x-cairn"]):
        add(name, "compose x-cairn")
    for service_name, service in data["services"].items():
        for name in compose_env(service):
            add(name, f"compose {service_name}")
    for where, doc in k8s_documents():
        for key in {**doc.get("data", {}), **doc.get("stringData", {})}:
            add(key, where)
        if doc["kind"] in ("Deployment", "CronJob"):
            for container in pod_spec(doc)["containers"]:
                for env in container.get("env", []):
                    add(env["name"], where)
    for stage in dockerfile_stages():
        for env in instructions(stage, "ENV"):
            for token in shlex.split(env):
                add(token.split("=", 1)[0], "Dockerfile")
    return names


def test_every_cairn_variable_is_a_real_setting() -> None:
    names = deployment_setting_names()
    assert len(names) >= 10
    unknown = {name: sorted(where) for name, where in names.items() if name not in SETTING_NAMES}
    assert unknown == {}


def test_setting_names_check_catches_a_typo() -> None:
    assert "CAIRN_MONGO_URL" in SETTING_NAMES
    assert "CAIRN_MONGODB_URL" not in SETTING_NAMES


# --- Kubernetes manifests ----------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("where", "doc"), k8s_documents(), ids=lambda v: v)
def test_k8s_documents_fit_the_api_schema(where: str, doc: dict[str, Any], version: str) -> None:
    validate_k8s(doc, version)


def _deployment() -> dict[str, Any]:
    return copy.deepcopy(next(d for d in k8s_kind("Deployment") if d["metadata"]["name"] == "ui"))


def _replicas_as_text(doc: dict[str, Any]) -> None:
    doc["spec"]["replicas"] = "two"


def _misspelt_field(doc: dict[str, Any]) -> None:
    doc["spec"]["replica"] = doc["spec"].pop("replicas")


def _port_as_text(doc: dict[str, Any]) -> None:
    doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"


def _container_without_name(doc: dict[str, Any]) -> None:
    del doc["spec"]["template"]["spec"]["containers"][0]["name"]


@pytest.mark.parametrize(
    "breakage", [_replicas_as_text, _misspelt_field, _port_as_text, _container_without_name]
)
def test_k8s_validation_rejects_a_broken_manifest(breakage: Any) -> None:
    doc = _deployment()
    validate_k8s(doc, K8S_VERSIONS[0])  # the intact one passes
    breakage(doc)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(doc, K8S_VERSIONS[0])


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in k8s_files())
    for name in kustomization["resources"]:
        assert (K8S / name).is_file()
    namespace = kustomization["namespace"]
    for where, doc in k8s_documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, where
    assert [d["metadata"]["name"] for d in k8s_kind("Namespace")] == [namespace]


def test_k8s_image_is_referenced_consistently() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    assert image["name"] == IMAGE
    for doc in workloads():
        for container in pod_spec(doc)["containers"]:
            assert container["image"] == f"{IMAGE}:{image['newTag']}", doc["metadata"]["name"]


def test_k8s_has_a_deployment_and_service_per_cairn_service() -> None:
    deployments = {d["metadata"]["name"]: d for d in k8s_kind("Deployment")}
    services = {s["metadata"]["name"]: s for s in k8s_kind("Service")}
    config = k8s_kind("ConfigMap")[0]["data"]
    assert set(deployments) == set(SERVICE_PORTS) == set(services)
    for name, port in SERVICE_PORTS.items():
        (container,) = pod_spec(deployments[name])["containers"]
        assert container["args"] == ["serve", name]
        assert container["ports"] == [{"name": "http", "containerPort": port}]
        assert int(config[f"CAIRN_{name.upper()}_PORT"]) == port
        assert config[f"CAIRN_{name.upper()}_HOST"] == "0.0.0.0"
        assert services[name]["spec"]["ports"][0]["port"] == port
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert services[name]["spec"]["selector"].items() <= labels.items()
    assert config["CAIRN_CATALOGUE_URL"] == "http://catalogue:8001"
    assert config["CAIRN_FEATURESTORE_URL"] == "http://featurestore:8002"
    assert config["CAIRN_BACKEND"] == "mongo"


@pytest.mark.parametrize("name", sorted(SERVICE_PORTS))
def test_k8s_deployments_probe_health(name: str) -> None:
    deployment = next(d for d in k8s_kind("Deployment") if d["metadata"]["name"] == name)
    (container,) = pod_spec(deployment)["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_k8s_workloads_run_locked_down() -> None:
    docs = workloads()
    assert len(docs) >= 4
    for doc in docs:
        name = doc["metadata"]["name"]
        spec = pod_spec(doc)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security["runAsUser"] == USER_ID, name
        assert spec.get("automountServiceAccountToken") is False, name
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert {"cpu", "memory"} <= set(resources["limits"]), name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], name
            # CAIRN_DATA_DIR must be writable with a read-only root file system.
            assert "/data" in mounts, name


def test_k8s_persistent_state_is_on_claims() -> None:
    claims = {c["metadata"]["name"] for c in k8s_kind("PersistentVolumeClaim")}
    for doc in k8s_kind("CronJob"):
        volumes = {v["name"]: v for v in pod_spec(doc)["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] in claims


def test_k8s_feature_store_scales_out_on_object_storage() -> None:
    featurestore = next(
        d for d in k8s_kind("Deployment") if d["metadata"]["name"] == "featurestore"
    )
    config = k8s_kind("ConfigMap")[0]["data"]
    # Tables on object storage shared by every replica, metadata in MongoDB ...
    assert config["CAIRN_BLOBS_URL"].split("://")[0] in {"s3", "abfss", "hdfs"}
    assert config["CAIRN_BACKEND"] == "mongo"
    # ... so several replicas, rolled one at a time, none of them holding a claim.
    assert featurestore["spec"]["replicas"] >= 2
    assert featurestore["spec"]["strategy"]["type"] == "RollingUpdate"
    assert featurestore["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    volumes = pod_spec(featurestore)["volumes"]
    assert all("persistentVolumeClaim" not in v for v in volumes)
    assert all("emptyDir" in v for v in volumes)
    # The read cache fits in its scratch volume.
    data = next(v for v in volumes if v["name"] == "data")
    size_gib = int(data["emptyDir"]["sizeLimit"].removesuffix("Gi"))
    assert int(config["CAIRN_BLOBS_CACHE_BYTES"]) < size_gib * 1024**3
    # No ReadWriteOnce claim is left for the feature store at all.
    assert "featurestore-blobs" not in {
        c["metadata"]["name"] for c in k8s_kind("PersistentVolumeClaim")
    }
    (budget,) = k8s_kind("PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    labels = featurestore["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_k8s_crawl_cronjob() -> None:
    (cronjob,) = k8s_kind("CronJob")
    assert cronjob["spec"]["schedule"] == "*/15 * * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    spec = pod_spec(cronjob)
    assert spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    assert container["args"][:2] == ["crawl", "hdfs://namenode:9870/lake"]
    crawl = typer.main.get_command(cli_app).commands["crawl"]  # type: ignore[attr-defined]
    known = {opt for param in crawl.params for opt in param.opts}
    assert {a for a in container["args"] if a.startswith("--")} <= known


def test_k8s_secret_is_an_example_with_placeholders() -> None:
    (secret,) = k8s_kind("Secret")
    values = secret["stringData"]
    assert set(values) == {
        "CAIRN_MONGO_URL",
        "CAIRN_API_KEYS",
        "CAIRN_API_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    assert all("change-me" in value for value in values.values())
    assert "EXAMPLE" in (K8S / "secret.yaml").read_text()
    # Every key a pod reads from a Secret or ConfigMap exists there.
    config_name = k8s_kind("ConfigMap")[0]["metadata"]["name"]
    for doc in workloads():
        container = pod_spec(doc)["containers"][0]
        assert container["envFrom"] == [{"configMapRef": {"name": config_name}}]
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                assert ref["name"] == secret["metadata"]["name"]
                assert ref["key"] in values


def test_k8s_readme_says_backends_are_provided() -> None:
    text = (K8S / "README.md").read_text()
    assert "kubectl apply -k deploy/k8s" in text
    assert "MongoDB" in text and "Elasticsearch" in text
    assert "change-me" in text


# --- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_with_a_wheel_builder() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    builder, final = stages[0], stages[-1]
    # Wheels of exactly the locked, hash-checked dependencies (the mongo, hdfs and adls extras),
    # fetched before the source is copied, then Cairn's own wheel.
    assert instructions(builder, "RUN")[-2:] == [
        "pip wheel --require-hashes --wheel-dir /wheels -r requirements/docker.txt",
        "pip wheel --no-deps --wheel-dir /wheels .",
    ]
    locked = (ROOT / "requirements" / "docker.txt").read_text()
    assert all(f"\n{pkg}==" in locked for pkg in ("pymongo", "elasticsearch", "hdfs"))
    assert "\nazure-storage-blob==" in locked
    # The final stage installs the builder's wheels as they are, offline. Not against the
    # lock's hashes: for sdist-only packages (docopt, hdfs) the lock has the sdist's hash, never
    # the hash of the wheel the builder made (tests/test_compose_stack.py builds the image).
    assert any(
        "pip install --no-index --no-deps /wheels/*.whl" in run
        for run in instructions(final, "RUN")
    )
    assert "python:3.11" in DOCKERFILE.read_text()
    # Every package the wheel is built from is copied into the builder.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    copied = {i.split()[0] for i in instructions(builder, "COPY")}
    assert set(packages) <= copied


def test_dockerfile_final_stage_runs_unprivileged_without_compilers() -> None:
    final = dockerfile_stages()[-1]
    users = instructions(final, "USER")
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user == str(USER_ID)
    runs = " ".join(instructions(final, "RUN"))
    for compiler in ("build-essential", "gcc", "g++", "clang", "make "):
        assert compiler not in runs, compiler
    assert f"--uid {USER_ID}" in runs
    assert f"chown {USER_ID}:{USER_ID} /data" in runs
    env = " ".join(instructions(final, "ENV"))
    assert "CAIRN_DATA_DIR=/data" in env
    for name in SERVICE_PORTS:
        assert f"CAIRN_{name.upper()}_HOST=0.0.0.0" in env


def test_dockerfile_exposes_the_ports_and_runs_cairn() -> None:
    final = dockerfile_stages()[-1]
    exposed = {int(port) for line in instructions(final, "EXPOSE") for port in line.split()}
    assert exposed == set(SERVICE_PORTS.values())
    (entrypoint,) = instructions(final, "ENTRYPOINT")
    assert json.loads(entrypoint)[-1] == "cairn"
    (cmd,) = instructions(final, "CMD")
    assert json.loads(cmd) == ["--help"]


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".cairn", ".venv", "benchmarks", "**/__pycache__", ".env"} <= ignored
    # What the Dockerfile copies is not ignored.
    assert not {"cairn", "pyproject.toml", "README.md"} & ignored
