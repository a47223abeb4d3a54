"""deploy/: the compose file, the Kubernetes manifests and the Dockerfile agree with the code.

Cheap static checks (no container runs here): every YAML parses; the service's containers set
only OUTAGE_* variables that Settings reads; every command they run is a real `outage`
command; probes hit /ready and /health on the configured port; the topic init creates every
topic the app uses, callers' numbers with the contact retention; the image copies every
package of pyproject.toml.
"""

import asyncio
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import main
from correlators.correlator import Correlator
from correlators.rules import CorrelationRules
from streams.app import PERSONAL_TOPICS, create_app
from streams.settings import Settings
from topology.load import load_topologies

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
IMAGE = "outage-correlator"  # the image of deploy/Dockerfile, as the manifests name it
SETTINGS_ENV = {f"OUTAGE_{name.upper()}" for name in Settings.model_fields}
DAY_MS = 86_400_000


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return document


def manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in load_all(path)]


def find(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in manifests() if d.get("kind") == kind and d["metadata"]["name"] == name]
    return found


def ours(image: str) -> bool:
    return image.split("/")[-1].split(":")[0] == IMAGE


def compose_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the project's image."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if "build" in service or ours(service.get("image", ""))
    }


def k8s_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload/container, container) for every container of the project's image."""
    for doc in manifests():
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("initContainers", []) + pod.get("containers", []):
            if ours(container["image"]):
                yield f"{doc['metadata']['name']}/{container['name']}", container


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def is_command(argv: list[str]) -> bool:
    """True when `outage ARGV --help` parses: the (sub)command and its options exist."""
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    return exit_.value.code == 0


def topic_specs(text: str) -> dict[str, str]:
    """'calls=contact scada=keep ...' -> {'calls': 'contact', 'scada': 'keep', ...}."""
    return dict(spec.split("=", 1) for spec in text.split())


def test_every_deploy_yaml_parses() -> None:
    """Each YAML file under deploy/ (compose, manifests, SCADA examples) is valid YAML."""
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert DEPLOY / "docker-compose.yml" in files and K8S / "kustomization.yaml" in files
    for path in files:
        assert load_all(path), f"{path} is empty"


def test_compose_sets_only_variables_that_settings_reads() -> None:
    """A misspelt OUTAGE_ variable in the compose file would be ignored silently: refuse it."""
    services = compose_services()
    assert {"worker", "scada"} <= set(services)
    for name, service in services.items():
        unknown = set(environment(service)) - SETTINGS_ENV
        assert not unknown, f"service {name}: {sorted(unknown)} are not Settings fields"
    worker = environment(services["worker"])
    assert worker["OUTAGE_BROKER"] == "kafka:9092"
    assert worker["OUTAGE_TANSU_WORKAROUNDS"] == "false"
    assert worker["OUTAGE_WEB_HOST"] == "0.0.0.0"
    assert worker["OUTAGE_CLICKHOUSE_URL"].startswith("clickhouse://")


def test_k8s_sets_only_variables_that_settings_reads() -> None:
    """ConfigMap, Secret and the containers' env name only OUTAGE_* fields of Settings."""
    named = set(find("ConfigMap", "outage-config")["data"])
    named |= set(find("Secret", "outage-secrets")["stringData"])
    for _, container in k8s_containers():
        named |= {e["name"] for e in container.get("env", [])}
        for e in container.get("env", []):
            ref = e.get("valueFrom", {})
            ref = ref.get("configMapKeyRef") or ref.get("secretKeyRef") or {}
            if ref:
                named.add(ref["key"])
    assert named - SETTINGS_ENV == set()


KAFKA_MIN_SESSION_S = 6.0  # Apache Kafka's default group.min.session.timeout.ms


def group_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings from the variables of `env` that decide sessions and replication."""
    for name in ("TANSU_WORKAROUNDS", "KAFKA_SESSION_TIMEOUT", "TOPIC_REPLICATION"):
        if f"OUTAGE_{name}" in env:
            monkeypatch.setenv(f"OUTAGE_{name}", str(env[f"OUTAGE_{name}"]))
    return Settings()


def test_deployed_workers_join_with_sessions_kafka_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Compose and k8s workers use group sessions of at least Kafka's default minimum (neither
    lowers the broker's), and k8s replicates the topics a worker creates three times."""
    kafka = compose()["services"]["kafka"]["environment"]
    assert "KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS" not in kafka
    worker = group_settings(environment(compose_services()["worker"]), monkeypatch)
    assert worker.session_timeout >= KAFKA_MIN_SESSION_S
    k8s = group_settings(find("ConfigMap", "outage-config")["data"], monkeypatch)
    assert k8s.session_timeout >= KAFKA_MIN_SESSION_S
    assert k8s.topic_replication == 3


def test_the_app_and_its_feeds_take_sessions_and_replication_from_settings(
    tmp_path: Path,
) -> None:
    """OUTAGE_KAFKA_SESSION_TIMEOUT sets the workers' groups, twice it the feeds' groups;
    OUTAGE_TOPIC_REPLICATION the replication of what the app and its followers create."""
    settings = Settings(
        data_dir=tmp_path,
        projections=False,
        broker="127.0.0.1:1",
        kafka_session_timeout=7,
        topic_replication=3,
    )
    topology = load_topologies(settings.topology)
    service = create_app(settings, Correlator(topology, CorrelationRules.load(None)))
    conf = service.app.conf
    assert (conf.broker_session_timeout, conf.broker_heartbeat_interval) == (7.0, 1.75)
    assert conf.topic_replication_factor == 3
    assert service.group_options() == {"session_timeout_ms": 14000, "heartbeat_interval_ms": 3500}

    async def follower_replication() -> int:
        return service.follower("incidents").replication  # its consumer needs a running loop

    assert asyncio.run(follower_replication()) == 3
    assert Settings(tansu_workarounds=True).session_timeout == 2.0  # the embedded Tansu's


def test_the_dockerfile_sets_only_known_variables_and_copies_every_package() -> None:
    """The image's ENV names Settings fields; its COPY lines hold every package pyproject finds."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert '\nENTRYPOINT ["outage"]' in dockerfile
    assert set(re.findall(r"\b(OUTAGE_\w+)=", dockerfile)) <= SETTINGS_ENV
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, re.M))
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
    assert "COPY pyproject.toml README.md ./" in dockerfile


def test_compose_commands_are_outage_commands() -> None:
    """Each service of the image runs a command the `outage` CLI has."""
    for name, service in compose_services().items():
        assert is_command(service["command"]), f"service {name}: outage {service['command']}"


def test_k8s_commands_are_outage_commands() -> None:
    """Container args and every `outage ...` line of an init script are real CLI commands."""
    checked = 0
    for where, container in k8s_containers():
        command = container.get("command", [])
        if command[:2] == ["/bin/sh", "-c"]:
            for line in re.findall(r"\boutage ([^<|&\n]+)", command[2]):
                assert is_command(shlex.split(line)), f"{where}: outage {line}"
                checked += 1
        else:
            assert not command or command[0] == "outage", where
            assert is_command(container.get("args", [])), f"{where}: {container.get('args')}"
            checked += 1
    assert checked >= 4  # the worker, the connector and the admin script's two commands


def test_compose_workers_are_checked_for_readiness_on_ready() -> None:
    """The worker's health check asks /ready on its own port; the connector has no HTTP."""
    worker = compose_services()["worker"]
    test = " ".join(worker["healthcheck"]["test"])
    port = environment(worker)["OUTAGE_WEB_PORT"]
    assert f"http://127.0.0.1:{port}/ready" in test


def test_k8s_probes_and_scrape_annotations_hit_the_worker_endpoints() -> None:
    """Readiness on /ready, liveness on /health, scraping on /metrics, all on OUTAGE_WEB_PORT."""
    port = int(find("ConfigMap", "outage-config")["data"]["OUTAGE_WEB_PORT"])
    workers = find("StatefulSet", "outage-worker")
    template = workers["spec"]["template"]
    (container,) = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == port
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == port


def test_k8s_workers_do_not_outnumber_partitions() -> None:
    """A worker beyond the partition count would get no partition of its own."""
    partitions = int(find("ConfigMap", "outage-config")["data"]["OUTAGE_PARTITIONS"])
    assert find("StatefulSet", "outage-worker")["spec"]["replicas"] <= partitions


def test_kustomization_lists_every_manifest() -> None:
    """`kubectl apply -k` would silently skip a manifest the kustomization does not name."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.fixture(scope="module")
def app_topics(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every topic the worker uses: its app's topics, its tables' changelogs, notifications."""
    data = tmp_path_factory.mktemp("app")
    settings = Settings(data_dir=data, projections=False, broker="127.0.0.1:1")
    topology = load_topologies(settings.topology)
    service = create_app(settings, Correlator(topology, CorrelationRules.load(None)))
    changelogs = {t.changelog_topic.get_topic_name() for t in service.app.tables.values()}
    return set(service.topics) | changelogs | {"notifications"}  # streams/alert_feed.py


def test_the_topic_inits_create_every_topic_with_its_retention(app_topics: set[str]) -> None:
    """Compose and k8s make the same topics: all the app uses, callers' numbers kept 30 days."""
    init = compose()["services"]["kafka-init"]["environment"]
    in_compose = topic_specs(init["TOPICS"])
    k8s = find("ConfigMap", "outage-kafka-topics")["data"]
    assert topic_specs(k8s["TOPICS"]) == in_compose
    assert app_topics <= set(in_compose), sorted(app_topics - set(in_compose))
    contact_ms = Settings().retention_contact_days * DAY_MS
    assert int(init["CONTACT_RETENTION_MS"]) == int(k8s["CONTACT_RETENTION_MS"]) == contact_ms
    for topic, kind in in_compose.items():
        expected = (
            "contact"
            if topic in PERSONAL_TOPICS
            else "compact"
            if topic.endswith("-changelog")
            else "keep"
        )
        assert kind == expected, f"{topic}: {kind}, expected {expected}"
    worker = environment(compose_services()["worker"])
    assert init["PARTITIONS"] == worker["OUTAGE_PARTITIONS"]  # the same ${PARTITIONS:-...}


def test_the_example_site_configs_pass_the_connectors_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The k8s ConfigMap's site and the compose default pass `outage scada check`."""
    monkeypatch.chdir(ROOT)  # their topology paths are relative to /app, the repository here
    inline = tmp_path / "scada.yaml"
    inline.write_text(find("ConfigMap", "outage-scada-heat-west")["data"]["scada.yaml"])
    volume = next(v for v in compose_services()["scada"]["volumes"] if "scada.yaml" in v)
    default = re.fullmatch(r"\$\{SCADA_CONFIG:-(.+?)\}:/etc/outage/scada\.yaml:ro", volume)
    assert default, volume
    for config in (inline, DEPLOY / default.group(1)):
        assert main(["scada", "check", "--config", str(config)]) == 0, config
