"""The production recipe (deploy/), checked offline: every manifest against the Kubernetes
JSON schemas, every command against the CLI that will run it, every probe against the routes
the app serves, every MLCP_* variable against the settings, every secret against the script
that makes it, and the Dockerfile against its ignore file."""

from __future__ import annotations

import re
import shlex
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import kubernetes_validate
import pytest

from controlplane.settings import ENV_PREFIX, Settings, load_settings
from serving.busy import TARGET as BUSY_TARGET
from tests.deploy.manifests import (
    DEPLOY,
    MLCP_IMAGE,
    ROOT,
    Container,
    containers,
    documents,
    environment,
    find,
    kustomization,
    manifest_files,
    mlcp_invocations,
    option,
    parse_cli,
    pod_spec,
    run_create_secrets,
    running,
    secret_refs,
)

# Pinned: the oldest Kubernetes docs/production.md supports and the newest whose schemas the
# pinned kubernetes-validate bundles. Both are read from the package's own files, no network.
KUBERNETES_VERSIONS = ("1.29", "1.37")
# Variables that are not fields of Settings but that mlcp reads.
EXTRA_MLCP_VARIABLES = {"MLCP_CONFIG", "MLCP_DEBUG"}
PRODUCTION_DOC = ROOT / "docs" / "production.md"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("schema validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    return run_create_secrets(tmp_path_factory.mktemp("secrets"))


def _cli() -> click.Group:
    from controlplane.cli import cli

    return cli


# -- schemas ------------------------------------------------------------------------------------
@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schema(version: str) -> None:
    docs = documents()
    assert len(docs) >= 20
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']} (Kubernetes {version})"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{where}: {path}: {exc.message}")


def test_kustomization_lists_every_manifest_and_names_the_image() -> None:
    config = kustomization()
    assert sorted(config["resources"]) == [p.name for p in manifest_files()]
    assert config["namespace"] == "mlcp"
    (image,) = config["images"]
    assert image["name"] == MLCP_IMAGE
    assert image["newTag"]


def test_every_third_party_image_is_pinned_to_a_tag() -> None:
    for c in containers():
        image = c.spec["image"]
        if image == MLCP_IMAGE:
            continue
        assert ":" in image, f"{c.name}: {image}"
        assert not image.endswith(":latest"), f"{c.name}: {image}"


# -- commands -----------------------------------------------------------------------------------
def test_every_container_runs_a_real_command_with_options_it_accepts() -> None:
    checked = 0
    for c in containers():
        if c.spec["image"] != MLCP_IMAGE:
            continue
        argv = c.argv
        try:
            if argv[0] == "mlcp":
                parse_cli(_cli(), argv[1:])
            elif argv[:2] == ["mlflow", "server"]:
                from mlflow.cli import cli as mlflow_cli

                parse_cli(mlflow_cli, argv[1:], prog="mlflow")
            elif argv[:2] == ["sh", "-c"]:
                found = mlcp_invocations(argv[2])
                assert found, f"{c.name}: a shell script that runs no mlcp command"
                for args in found:
                    parse_cli(_cli(), args)
            elif argv[:2] == ["python", "-c"]:
                compile(argv[2], c.name, "exec")
            else:
                pytest.fail(f"{c.name}: unexpected command {argv}")
        except click.ClickException as exc:
            pytest.fail(f"{c.name}: `{shlex.join(argv)}`: {exc.format_message()}")
        checked += 1
    assert checked >= 9


def test_parse_cli_refuses_what_mlcp_would_refuse() -> None:
    with pytest.raises(click.UsageError):
        parse_cli(_cli(), ["serve", "--no-such-flag"])
    with pytest.raises(click.UsageError):
        parse_cli(_cli(), ["controller", "walk"])
    with pytest.raises(click.BadParameter):
        parse_cli(_cli(), ["controller", "run", "--interval", "soon"])
    assert mlcp_invocations("until mlcp db current --json | grep -q x; do sleep 5; done") == [
        ["db", "current", "--json"]
    ]


def test_the_services_listen_beyond_loopback() -> None:
    for words, flag in ((("serve",), "--host"), (("api",), "--host")):
        assert option(running(*words).argv, flag) == "0.0.0.0", words
    assert option(running("controller", "run").argv, "--metrics-host") == "0.0.0.0"


def test_the_controller_runs_twice_every_second_with_its_metrics_port() -> None:
    deployment = find("Deployment", "mlcp-controller")
    assert deployment["spec"]["replicas"] == 2
    ctl = running("controller", "run")
    assert option(ctl.argv, "--interval") == "1s"
    port = int(option(ctl.argv, "--metrics-port") or 0)
    assert ctl.port("metrics") == port
    service = find("Service", "mlcp-controller-metrics")
    assert [ctl.port(p["targetPort"]) for p in service["spec"]["ports"]] == [port]


def test_the_migrations_job_runs_db_upgrade_and_the_servers_wait_for_it() -> None:
    job = find("Job", "mlcp-db-upgrade")
    (migrate,) = pod_spec(job)["containers"]
    assert migrate["command"] == ["mlcp", "db", "upgrade"]
    for words in (("serve",), ("api",), ("controller", "run")):
        pod = running(*words).pod
        waits = [mlcp_invocations(" ".join(i["command"][2:])) for i in pod["initContainers"]]
        assert [["db", "current", "--json"]] in waits, words


# -- probes -------------------------------------------------------------------------------------
def _get_routes(app: Any) -> set[str]:
    return {r.path for r in app.routes if "GET" in getattr(r, "methods", ())}


PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def _probes(c: Container) -> dict[str, dict[str, Any]]:
    return {kind: c.spec[kind] for kind in PROBES if kind in c.spec}


def test_serving_probes_hit_its_health_routes_on_its_port() -> None:
    from serving.app import create_app
    from serving.config import ServerConfig

    routes = _get_routes(create_app(SimpleNamespace(config=ServerConfig())))  # type: ignore[arg-type]
    serve = running("serve")
    port = int(option(serve.argv, "--port") or 0)
    probes = _probes(serve)
    assert probes["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    for kind, probe in probes.items():
        assert probe["httpGet"]["path"] in routes, kind
        assert serve.port(probe["httpGet"]["port"]) == port, kind


def test_api_probes_hit_a_route_it_serves_without_a_token() -> None:
    from controlplane.api.app import create_app

    # The routing table only: no control plane behind it (the guard reads these two).
    offline = SimpleNamespace(tokens=None, settings=SimpleNamespace(api_max_body_kb=4096))
    routes = _get_routes(create_app(offline))  # type: ignore[arg-type]
    api = running("api")
    port = int(option(api.argv, "--port") or 0)
    for kind, probe in _probes(api).items():
        assert probe["httpGet"]["path"] == "/healthz", kind  # the one route open without a token
        assert probe["httpGet"]["path"] in routes
        assert api.port(probe["httpGet"]["port"]) == port, kind


def test_controller_probes_read_its_metrics_port() -> None:
    ctl = running("controller", "run")
    for kind, probe in _probes(ctl).items():
        assert ctl.port(probe["httpGet"]["port"]) == int(option(ctl.argv, "--metrics-port") or 0)
        assert probe["httpGet"]["path"] == "/metrics", kind


def test_serving_drains_within_its_grace_period() -> None:
    serve = running("serve")
    pre_stop = serve.spec["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    request_deadline_s = float(option(serve.argv, "--timeout-ms") or 10_000) / 1000
    report_s = float(option(serve.argv, "--db-timeout-s") or 5)
    needed = float(pre_stop[1]) + request_deadline_s + report_s
    assert serve.pod["terminationGracePeriodSeconds"] >= needed


def test_serving_scales_on_its_busy_gauge_and_cpu_between_two_and_more_replicas() -> None:
    hpa = find("HorizontalPodAutoscaler", "mlcp-serving")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "mlcp-serving")
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    busy, cpu = hpa["spec"]["metrics"]
    assert busy["pods"]["metric"]["name"] == "mlcp_serving_busy"  # what /metrics exports
    assert busy["pods"]["target"]["averageValue"] == f"{round(BUSY_TARGET * 1000)}m"
    assert cpu["resource"]["name"] == "cpu"
    serve = running("serve")
    assert serve.spec["resources"]["requests"]["cpu"]  # utilization is relative to it


def test_every_service_and_budget_selects_pods_with_the_ports_it_names() -> None:
    pods = [
        (d["spec"]["template"]["metadata"]["labels"], pod_spec(d))
        for d in documents()
        if d["kind"] in {"Deployment", "StatefulSet"}
    ]
    for doc in documents():
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            selector = doc["spec"]["selector"]["matchLabels"]
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= labels.items(), doc["metadata"]["name"]
        if doc["kind"] not in {"Service", "PodDisruptionBudget"}:
            continue
        selector = doc["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        matched = [spec for labels, spec in pods if selector.items() <= labels.items()]
        assert matched, f"{doc['kind']}/{doc['metadata']['name']} selects no pod"
        if doc["kind"] == "Service":
            names = {p.get("name") for s in matched for c in s["containers"] for p in c["ports"]}
            for port in doc["spec"]["ports"]:
                assert port["targetPort"] in names, doc["metadata"]["name"]


def test_every_pod_runs_unprivileged_within_its_resources() -> None:
    for doc in documents():
        if doc["kind"] not in {"Deployment", "StatefulSet", "Job"}:
            continue
        pod = pod_spec(doc)
        assert pod["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for c in containers():
        context = c.spec["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, c.name
        assert context["capabilities"]["drop"] == ["ALL"], c.name
        assert c.spec["resources"]["requests"].keys() >= {"cpu", "memory"}, c.name
        assert "memory" in c.spec["resources"]["limits"], c.name


# -- settings and secrets -----------------------------------------------------------------------
def _known_variables() -> set[str]:
    return {ENV_PREFIX + name.upper() for name in Settings.model_fields} | EXTRA_MLCP_VARIABLES


def test_every_mlcp_variable_in_the_manifests_is_a_real_setting(
    secrets: dict[str, dict[str, str]],
) -> None:
    known = _known_variables()
    named = set(find("ConfigMap", "mlcp-settings")["data"])
    named |= {v["name"] for c in containers() for v in c.spec.get("env", [])}
    named |= {k for values in secrets.values() for k in values}
    mlcp = {name for name in named if name.startswith(ENV_PREFIX)}
    assert mlcp >= {"MLCP_DATABASE_URL", "MLCP_MLFLOW_TRACKING_URI", "MLCP_ARTIFACT_ROOT"}
    assert mlcp <= known, f"not settings: {sorted(mlcp - known)}"
    # Remote mode would send the pods' own `mlcp` commands to the API instead of the stores.
    assert not mlcp & {"MLCP_API_URL", "MLCP_TOKEN"}


def test_every_mlcp_container_gets_valid_production_settings(
    secrets: dict[str, dict[str, str]],
) -> None:
    for c in containers():
        if c.spec["image"] != MLCP_IMAGE or c.argv[0] == "python":
            continue
        env = environment(c, secrets)
        if c.argv[0] == "mlflow":
            assert env["MLFLOW_BACKEND_STORE_URI"].endswith("@mlcp-postgres:5432/mlflow")
            continue
        fields = {k.removeprefix(ENV_PREFIX).lower(): v for k, v in env.items()}
        settings = load_settings(**{k: v for k, v in fields.items() if k in Settings.model_fields})
        assert settings.database_url.startswith("postgresql+psycopg://mlcp:"), c.name
        assert settings.database_url.endswith("@mlcp-postgres:5432/mlcp"), c.name
        assert settings.mlflow_tracking_uri == "http://mlcp-mlflow:5000", c.name
        # Artifacts go through the MLflow server: a file:// root would land on the pod's disk.
        assert settings.artifact_root.startswith("mlflow-artifacts:/"), c.name
        assert settings.feast_registry.endswith("@mlcp-postgres:5432/feast"), c.name
        assert settings.feast_online_store.startswith("redis://:"), c.name
        home = str(settings.home)
        mounts = [m["mountPath"] for m in c.spec["volumeMounts"]]
        assert any(home.startswith(m) for m in mounts), f"{c.name}: {home} is not writable"


def test_every_secret_referenced_is_made_by_the_script_and_none_is_committed(
    secrets: dict[str, dict[str, str]],
) -> None:
    assert not [d for d in documents() if d["kind"] == "Secret"]
    for name, key in secret_refs():
        assert name in secrets, f"create-secrets.sh does not make {name}"
        assert key is None or key in secrets[name], f"{name} has no key {key}"
    passwords = {secrets["mlcp-postgres"]["password"], secrets["mlcp-redis"]["password"]}
    assert all(re.fullmatch(r"[0-9a-f]{48}", p) for p in passwords)


def test_the_script_makes_fresh_passwords_each_time(
    secrets: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    other = run_create_secrets(tmp_path)
    assert other.keys() == secrets.keys()
    assert other["mlcp-postgres"]["password"] != secrets["mlcp-postgres"]["password"]


# -- the image ----------------------------------------------------------------------------------
def _dockerfile() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_image_copies_every_package_and_the_ignore_file_lets_them_in() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set()
    for op, rest in _dockerfile():
        if op == "COPY" and not rest.startswith("--from"):
            copied |= {s.rstrip("/").removeprefix("./") for s in rest.split()[:-1]}
    assert copied >= packages | {"pyproject.toml", "README.md"}
    rules = [
        line
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert rules[0] == "*", "an allow-list: everything out, then what the image needs"
    allowed = {line.removeprefix("!").rstrip("/") for line in rules if line.startswith("!")}
    assert copied <= allowed, f"copied but ignored: {sorted(copied - allowed)}"


def test_the_image_pins_torch_runs_as_a_user_and_bakes_in_no_secret() -> None:
    steps = _dockerfile()
    args = dict(rest.split("=", 1) for op, rest in steps if op == "ARG" and "=" in rest)
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["TORCH_VERSION"])
    assert args["TORCH_INDEX_URL"].endswith("/cpu")
    assert any('"torch==${TORCH_VERSION}"' in rest for op, rest in steps if op == "RUN")
    users = [rest for op, rest in steps if op == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1].isdigit(), "a numeric uid, so runAsNonRoot can check it"
    assert int(users[-1]) > 0
    for op, rest in steps:
        if op in {"ENV", "ARG"}:
            assert not re.search(r"PASSWORD|SECRET|TOKEN|_KEY|DATABASE_URL", rest), rest


# -- the docs -----------------------------------------------------------------------------------
# `mlcp ...` at the start of a line, or after `kubectl exec ... --` (and `env VAR=value`).
_DOC_COMMAND = re.compile(r"(?:^|\s--\s+)(?:env\s+(?:\S+=\S+\s+)*)?(mlcp\s.*)$")


def _doc_commands() -> list[list[str]]:
    text = PRODUCTION_DOC.read_text()
    blocks = re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, re.S)
    found = []
    for block in blocks:
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            match = _DOC_COMMAND.search(line.split(" #", 1)[0].strip())
            if match:
                found += mlcp_invocations(match.group(1))
    return found


def test_the_mlcp_commands_in_the_production_guide_parse() -> None:
    commands = _doc_commands()
    assert ["db", "upgrade"] in commands
    assert any(c[:2] == ["tokens", "create"] for c in commands)
    for args in commands:
        try:
            parse_cli(_cli(), args)
        except click.ClickException as exc:
            pytest.fail(f"docs/production.md: `mlcp {shlex.join(args)}`: {exc.format_message()}")


def test_the_production_guide_names_every_secret_and_points_nowhere_outside() -> None:
    text = PRODUCTION_DOC.read_text()
    for name, _ in secret_refs():
        assert name in text, name
    for path in [PRODUCTION_DOC, *DEPLOY.rglob("*")]:
        if path.is_file():
            assert "shared/" not in path.read_text(), path
