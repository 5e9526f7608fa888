"""The nightly scan's wiring: customer partitions that follow the settings folder, the
schedule's run requests, retries of transient errors only, and the alert sensor on real
Dagster instances (SQLite and dagster-postgres) over three simulated nights, with every
alert a local webhook received scanned for the demo roster's students.

Runs are produced cheaply: a stand-in `reconcile_customer` job (one `mismatch_report`
asset whose checks are built by the real `_check_result` from small findings tables)
executed in process on the instance under test. `reconcile scan --alert` runs the real
pipeline once, for the smallest demo customer.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from dagster import AssetExecutionContext
from sqlalchemy.engine import URL

from reconciliation.alerts.night import STATE_KEY, alert_from_instance, load_state
from reconciliation.defs.assets import HOLD_TAG, _check_result, _read
from reconciliation.defs.partitions import (
    SOURCE_HOST_TAG,
    customer_partitions,
    partition_changes,
    source_host,
)
from reconciliation.defs.retries import EXTRACT_RETRY, transient
from reconciliation.defs.schedules import nightly_scan
from reconciliation.defs.sensors import customer_partitions_sensor, nightly_alerts
from reconciliation.rules import RULE_IDS
from reconciliation.settings import DEFAULT_SETTINGS_DIR, load_settings
from reconciliation_tests.fixtures.postgres import throwaway_database
from reconciliation_tests.fixtures.webhook_server import WebhookServer
from reconciliation_tests.test_alerts_sinks import student_data_patterns

RECONCILE = str(Path(sys.executable).with_name("reconcile"))
NIGHT_1 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


# -- settings folders ----------------------------------------------------------------------


def write_customer(folder: Path, customer: str, number: int, **changes: Any) -> Path:
    document = {
        "customer_id": customer,
        "name": f"{customer.title()} district",
        "environment": "staging",
        "bookmarked": {"customer_id": number, "database_url": "sqlite:///bookmarked.db"},
        "source": {"type": "oneroster_csv", "location": f"{customer}/oneroster.zip"},
        **changes,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{customer}.json"
    path.write_text(json.dumps(document))
    return path


def apply(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    """What the sensor daemon does with the sensor's partition requests."""
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


# -- partitions follow the settings ------------------------------------------------------


def test_partition_changes_add_missing_and_retire_the_rest() -> None:
    changes = partition_changes(["a", "b", "c"], ["b", "c", "gone"])
    assert (changes.add, changes.retire) == (("a",), ("gone",))
    assert not partition_changes(["a"], ["a"])


def test_the_partition_sensor_adds_and_retires_customers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tmp_path / "settings"
    write_customer(settings, "alpha", 1)
    write_customer(settings, "bravo", 2)
    monkeypatch.setenv("RECONCILIATION_SETTINGS_DIR", str(settings))
    with dg.DagsterInstance.ephemeral() as instance:
        first = customer_partitions_sensor(dg.build_sensor_context(instance=instance))
        apply(instance, first)
        assert instance.get_dynamic_partitions("customers") == ["alpha", "bravo"]
        quiet = customer_partitions_sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(quiet, dg.SkipReason)

        # a new file, a removed one, a disabled one: no code change, no reload
        write_customer(settings, "charlie", 3)
        (settings / "alpha.json").unlink()
        write_customer(settings, "bravo", 2, enabled=False)
        second = customer_partitions_sensor(dg.build_sensor_context(instance=instance))
        apply(instance, second)
        assert instance.get_dynamic_partitions("customers") == ["charlie"]

        # a settings folder that is gone (an unmounted volume) retires nobody
        shutil.rmtree(settings)
        gone = customer_partitions_sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(gone, dg.SkipReason) and "cannot be read" in gone.skip_message
        assert instance.get_dynamic_partitions("customers") == ["charlie"]


def test_the_schedule_requests_one_run_per_enabled_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tmp_path / "settings"
    write_customer(
        settings,
        "alpha",
        1,
        source={"type": "oneroster_api", "base_url": "https://sis.alpha.k12.example/ims/v1p1"},
    )
    write_customer(settings, "bravo", 2)
    write_customer(settings, "charlie", 3, enabled=False)  # its partition not retired yet
    write_customer(settings, "delta", 4)  # no partition yet: the sensor adds it
    monkeypatch.setenv("RECONCILIATION_SETTINGS_DIR", str(settings))
    when = datetime(2026, 12, 8, 3, 0)
    with dg.instance_for_test() as instance:  # a schedule context needs an instance ref
        empty = nightly_scan(dg.build_schedule_context(instance, scheduled_execution_time=when))
        assert isinstance(empty, dg.SkipReason)
        instance.add_dynamic_partitions("customers", ["alpha", "bravo", "charlie", "gone"])
        requests = nightly_scan(dg.build_schedule_context(instance, scheduled_execution_time=when))
    assert [(r.partition_key, r.run_key) for r in requests] == [
        ("alpha", "nightly-2026-12-08-alpha"),
        ("bravo", "nightly-2026-12-08-bravo"),
    ]
    assert requests[0].tags == {
        "reconciliation/trigger": "nightly",
        SOURCE_HOST_TAG: "sis.alpha.k12.example",
    }
    assert requests[1].tags[SOURCE_HOST_TAG] == "local-files"


def test_the_source_host_tag_is_a_hostname_only(tmp_path: Path) -> None:
    sources = {
        "sftp": {"type": "oneroster_csv", "location": "sftp://drops.k12.example:2222/out/x"},
        "proxy": {
            "type": "classlink",
            "mode": "oneroster_proxy",
            "app_id": "app1",
            "access_token": "env:TOKEN",
        },
        "files": {"type": "oneroster_csv", "location": "exports/"},
    }
    for number, (name, source) in enumerate(sources.items(), 1):
        write_customer(tmp_path, name, number, source=source)
    folder = load_settings(tmp_path, sources=False)
    assert not folder.errors, folder.errors
    hosts = {name: source_host(folder.customers[name]) for name in sources}
    assert hosts == {
        "sftp": "drops.k12.example",
        "proxy": "oneroster-proxy.classlink.io",
        "files": "local-files",
    }


# -- retries: transient errors only --------------------------------------------------------


def _connector_error(cause: BaseException | None, message: str = "read failed") -> Exception:
    """A ConnectorError raised `from None` while handling `cause`, as the connectors do."""
    from reconciliation.connectors import ConnectorError

    if cause is None:
        return ConnectorError(message)
    try:
        try:
            raise cause
        except BaseException:
            raise ConnectorError(message) from None
    except ConnectorError as exc:
        return exc


def test_which_connector_errors_are_transient() -> None:
    from sqlalchemy.exc import OperationalError

    from reconciliation.connectors.base import SourceDataError
    from reconciliation.connectors.oneroster_rest import OneRosterApiError

    def db(words: str) -> Exception:
        return _connector_error(OperationalError("SELECT 1", {}, Exception(words)))

    assert transient(_connector_error(ConnectionRefusedError(111, "refused")))
    assert transient(_connector_error(TimeoutError("timed out")))
    assert transient(OneRosterApiError("busy", url="https://x.example/users", status=503))
    assert transient(db('could not connect to server: Connection refused (host "db")'))
    assert transient(_connector_error(None, "Bookmarked API https://x: GET /users answered 502"))
    assert not transient(OneRosterApiError("no", url="https://x.example/users", status=401))
    assert not transient(db('password authentication failed for user "reader"'))
    assert not transient(_connector_error(None, "Bookmarked API https://x: GET / answered 404"))
    assert not transient(SourceDataError("not valid CSV", file="users.csv", line=502))
    assert not transient(_connector_error(None, "/data/x.zip: no such folder or file"))


@pytest.mark.parametrize(
    ("cause", "attempts"), [(ConnectionResetError(104, "reset"), 3), (None, 1)]
)
def test_retry_policy_retries_transient_failures_only(cause: Any, attempts: int) -> None:
    """Dagster retries every exception of a step with a RetryPolicy except a Failure with
    allow_retries=False: `_read` (the extraction steps' reader) decides by `transient`."""
    tries: list[int] = []

    def fetch() -> None:
        tries.append(1)
        raise _connector_error(cause, "users.csv, line 3: bad input" if cause is None else "x")

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=2))  # EXTRACT_RETRY without the wait
    def extract(context: dg.AssetExecutionContext) -> None:
        _read(context, fetch, "reading the SIS roster", "alpha")

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([extract], instance=instance, raise_on_error=False)
    assert not result.success
    assert len(tries) == attempts


def test_a_customer_without_settings_fails_without_retries(tmp_path: Path) -> None:
    """A partition whose settings file is gone (retired during the night): both extraction
    steps fail at once, with the reason, instead of waiting through EXTRACT_RETRY."""
    from reconciliation.defs.assets import bookmarked_roster, source_roster
    from reconciliation.defs.io_managers import RosterIOManager
    from reconciliation.defs.resources import ReconciliationResource

    write_customer(tmp_path / "settings", "alpha", 1)
    resources = {
        "reconciliation": ReconciliationResource(settings_dir=str(tmp_path / "settings")),
        "roster_io_manager": RosterIOManager(base_dir=str(tmp_path / "rosters")),
    }
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("customers", ["ghost"])
        result = dg.materialize(
            [source_roster, bookmarked_roster],
            partition_key="ghost",
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert {e.step_key for e in failures} == {"source_roster", "bookmarked_roster"}
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert all("ghost" in e.step_failure_data.user_failure_data.description for e in failures)


def test_the_extraction_steps_carry_the_retry_policy_and_the_pool() -> None:
    from reconciliation.definitions import defs

    graph = defs.resolve_asset_graph()
    for name in ("source_roster", "bookmarked_roster"):
        node = graph.get(dg.AssetKey(name))
        assert node.assets_def.op.retry_policy == EXTRACT_RETRY
    assert graph.get(dg.AssetKey("bookmarked_roster")).assets_def.op.pools == {
        "bookmarked_database"
    }
    assert graph.get(dg.AssetKey("mismatch_report")).assets_def.op.retry_policy is None


# -- the alert sensor on real instances ----------------------------------------------------

#: customer -> what its next run does: "failed", "held", or rule -> severity -> findings
PLAN: dict[str, Any] = {}
#: quoted in the failed run's message: an alert must never carry it
LEAK = {"record": "", "email": ""}


def _findings(counts: dict[str, int]) -> pl.DataFrame:
    severities = [s for s, n in counts.items() for _ in range(n)]
    return pl.DataFrame({"severity": severities, "status": ["ISSUE_IN_SOURCE"] * len(severities)})


@dg.asset(
    name="mismatch_report",
    partitions_def=customer_partitions,
    check_specs=[
        dg.AssetCheckSpec(rule, asset="mismatch_report", partitions_def=customer_partitions)
        for rule in RULE_IDS
    ],
)
def stand_in_report(context: AssetExecutionContext) -> dg.MaterializeResult:
    """A run of one customer as the real report step ends it: checks, a failure, a hold."""
    customer = context.partition_key
    plan = PLAN[customer]
    if plan == "failed":
        raise dg.Failure(
            description=f"reading the SIS roster for customer {customer}: users.csv, line 7 "
            f"(email), record {LEAK['record']}: {LEAK['email']} is not an email address",
            metadata={"error_type": "SourceDataError"},
            allow_retries=False,
        )
    if plan == "held":
        context.instance.add_run_tags(context.run.run_id, {HOLD_TAG: "held"})
        raise dg.Failure(
            description=f"HELD {customer}: the export has 0 users, Bookmarked 812 live. "
            "No findings were reported. If this export is right, accept it once",
            metadata={"outcome": dg.MetadataValue.text("held")},
            allow_retries=False,
        )
    return dg.MaterializeResult(
        check_results=[_check_result(rule, _findings(plan.get(rule, {}))) for rule in RULE_IDS]
    )


STAND_IN = dg.Definitions(
    assets=[stand_in_report],
    jobs=[dg.define_asset_job("reconcile_customer", selection=[stand_in_report])],
).resolve_job_def("reconcile_customer")


#: the runs' events are stored as usual; only their console echo is silenced
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def run_night(instance: dg.DagsterInstance, plan: dict[str, Any]) -> None:
    PLAN.clear()
    PLAN.update(plan)
    known = set(instance.get_dynamic_partitions("customers"))
    instance.add_dynamic_partitions("customers", [c for c in plan if c not in known])
    for customer in plan:
        STAND_IN.execute_in_process(
            run_config=QUIET, instance=instance, partition_key=customer, raise_on_error=False
        )


@pytest.fixture(scope="module")
def demo_identifiers() -> dict[str, re.Pattern[str]]:
    """Every sourcedId, email and name of a demo roster (Hillcrest's, as the demo builds it)."""
    from reconciliation.demo.demo import DEMO_CUSTOMERS
    from reconciliation.demo.world import generate_world

    index = next(i for i, c in enumerate(DEMO_CUSTOMERS) if c[0].customer_id == "hillcrest-academy")
    profile, students, _ = DEMO_CUSTOMERS[index]
    world = generate_world(students, 7 * 1000 + index, profile=profile, today=NIGHT_1.date())
    users = world.source["users"]
    student = users.filter(pl.col("email").str.contains("@")).row(0, named=True)
    LEAK.update(record=student["sourcedId"], email=student["email"])
    ids = set(users["sourcedId"].drop_nulls().to_list())
    emails = {v.lower() for v in users["email"].drop_nulls().to_list() if v}
    names = {
        v
        for c in ("givenName", "familyName")
        for v in users[c].drop_nulls().to_list()
        if len(v) > 1
    }
    return student_data_patterns(ids, emails, names)


@pytest.fixture
def webhook(
    webhook_server: WebhookServer,
    demo_identifiers: dict[str, re.Pattern[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[WebhookServer]:
    """The webhook sink on (`RECONCILIATION_ALERT_WEBHOOK_URL` alone); after the test,
    every body it received is scanned for the demo roster's students."""
    monkeypatch.setenv("RECONCILIATION_ALERT_WEBHOOK_URL", webhook_server.webhook_url)
    monkeypatch.delenv("RECONCILIATION_ALERTS_FILE", raising=False)
    yield webhook_server
    for body in webhook_server.bodies:
        for kind, pattern in demo_identifiers.items():
            found = pattern.search(body)
            assert found is None, f"an alert holds a demo {kind}: {found.group()!r}"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "settings"
    for number, customer in enumerate(("alpha", "bravo", "charlie", "delta"), 1):
        write_customer(folder, customer, number)
    monkeypatch.setenv("RECONCILIATION_SETTINGS_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def postgres_instance_url(pg_server_url: URL) -> Iterator[str]:
    """A fresh database for a dagster-postgres instance, dropped afterwards."""
    with throwaway_database(pg_server_url, "reconciliation_dagster") as url:
        yield url.render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgres"])
def instance(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A real instance on SQLite storage in a folder, or on dagster-postgres."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_instance_url")
        (home / "dagster.yaml").write_text(
            json.dumps({"storage": {"postgres": {"postgres_url": url}}})
        )
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.wipe()
            instance.run_storage.set_cursor_values({STATE_KEY: ""})
            yield instance
    else:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance


def test_the_alert_sensor_waits_for_the_night_then_alerts_once(
    instance: dg.DagsterInstance, settings: Path, webhook: WebhookServer
) -> None:
    """One failing customer among healthy ones: the sensor alerts on it, once, when no run
    is in flight; failed checks of a successful run alert too."""
    context = dg.build_sensor_context(instance=instance)
    assert isinstance(nightly_alerts(context), dg.SkipReason)  # no run yet

    run_night(
        instance,
        {
            "alpha": {"missing_data": {"high": 3}},
            "bravo": {},
            "charlie": "failed",
            "delta": {},
        },
    )
    # a run still going: the night is not over
    queued = dg.DagsterRun(
        job_name="reconcile_customer",
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.STARTED,
        tags={"dagster/partition": "alpha"},
    )
    instance.add_run(queued)
    waiting = nightly_alerts(context)
    assert isinstance(waiting, dg.SkipReason) and "waiting for 1" in waiting.skip_message
    assert not webhook.messages
    instance.delete_run(queued.run_id)

    result = nightly_alerts(context)
    assert isinstance(result, dg.SensorResult) and result.cursor
    texts = sorted(m["text"] for m in webhook.messages)
    assert len(texts) == 2
    assert "alpha" in texts[0] and "missing_data" in texts[0]
    assert "charlie" in texts[1] and "source_roster" not in texts[1]
    assert "bad input in the data read" in texts[1] or "failed" in texts[1]
    state = load_state(instance)
    assert set(state["customers"]) == {"alpha", "charlie"}
    # the failed run's own message quotes a student; the alert did not (the fixture scans it)
    failed = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": "charlie"}))[0]
    [failure] = instance.get_records_for_run(
        failed.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
    ).records
    description = failure.event_log_entry.dagster_event.step_failure_data.user_failure_data
    assert LEAK["record"] in description.description

    # the next tick, nothing new finished: no evaluation, no message
    context = dg.build_sensor_context(instance=instance, cursor=result.cursor)
    assert isinstance(nightly_alerts(context), dg.SkipReason)
    assert len(webhook.messages) == 2


def test_three_nights_dedup_and_reminders(settings: Path, webhook: WebhookServer) -> None:
    """On an ephemeral instance (in-memory SQLite, the same SQL storage code: 0.08 s a run
    instead of 0.6 s); the sensor test above covers SQLite files and dagster-postgres."""
    with dg.DagsterInstance.ephemeral() as instance:
        _three_nights(instance, webhook)


def _three_nights(instance: dg.DagsterInstance, webhook: WebhookServer) -> None:
    night = {n: NIGHT_1 + timedelta(days=d) for n, d in ((1, 0), (2, 1), (3, 8))}
    lines: list[str] = []

    def evaluate(n: int) -> list[str]:
        before = len(webhook.messages)
        alert_from_instance(instance, now=night[n], echo=lines.append)
        return sorted(m["text"].split("\n")[0] for m in webhook.messages[before:])

    run_night(
        instance,
        {
            "alpha": {"parent_email_conflict": {"critical": 2}},
            "bravo": {},
            "charlie": "failed",
            "delta": "held",
        },
    )
    first = evaluate(1)
    assert len(first) == 3 and not any("bravo" in t for t in first)

    # night 2: alpha unchanged, charlie still failing: nothing; bravo new; delta recovered
    run_night(
        instance,
        {
            "alpha": {"parent_email_conflict": {"critical": 2}},
            "bravo": {"missing_data": {"high": 1}},
            "charlie": "failed",
            "delta": {},
        },
    )
    second = evaluate(2)
    assert len(second) == 1 and "bravo" in second[0]
    assert any(line.startswith("alerts: alpha: nothing sent") for line in lines)

    # the same runs evaluated again (a second sensor tick, `scan --alert`): nothing
    assert evaluate(2) == []

    # night 3, a week later: alpha's critical findings and charlie's failure are reminded
    # (bravo and delta did not run again: their newest runs were evaluated, nothing is sent)
    run_night(instance, {"alpha": {"parent_email_conflict": {"critical": 2}}, "charlie": "failed"})
    third = evaluate(3)
    assert len(third) == 2
    assert "alpha" in third[0] and "critical findings still open after 8 days" in third[0]
    assert "charlie" in third[1] and "run still failed after 8 days" in third[1]
    state = load_state(instance)
    assert state["customers"]["alpha"]["critical_alerted_at"]["parent_email_conflict"] == (
        night[3].isoformat()
    )


# -- `reconcile scan --alert`, for real, once -----------------------------------------------


def test_scan_alert_sends_through_the_sensors_path(tmp_path: Path, webhook: WebhookServer) -> None:
    from reconciliation.demo import generate_demo

    generate_demo(tmp_path / "demo" / "data")
    (tmp_path / "settings").mkdir()
    shutil.copy(DEFAULT_SETTINGS_DIR / "hillcrest-academy.json", tmp_path / "settings")
    env = {
        **{k: v for k, v in os.environ.items() if k != "RECONCILIATION_ALERTS_FILE"},
        "RECONCILIATION_SETTINGS_DIR": str(tmp_path / "settings"),
        "RECONCILIATION_REPORTS_DIR": str(tmp_path / "reports"),
        "RECONCILIATION_STORAGE_DIR": str(tmp_path / "storage"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "RECONCILIATION_ALERT_WEBHOOK_URL": webhook.webhook_url,
    }
    command = [RECONCILE, "scan", "--customer", "hillcrest-academy", "--alert"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "hillcrest-academy: ok" in first.stdout
    sent = [line for line in first.stdout.splitlines() if line.startswith("alerts: ")]
    assert sent and all("-> webhook:" in line for line in sent), first.stdout
    assert len(webhook.messages) == 1 and "hillcrest-academy" in webhook.messages[0]["text"]

    # the state is in the instance: trying the alerts again sends nothing and says why
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert "hillcrest-academy" in load_state(instance)["customers"]
        lines: list[str] = []
        alert_from_instance(
            instance,
            settings=load_settings(tmp_path / "settings", sources=False),
            environ=env,
            echo=lines.append,
        )
    assert lines == [
        "alerts: nothing to send (1 customers evaluated): "
        f"hillcrest-academy: run {load_state_run(env)} was already evaluated"
    ]
    assert len(webhook.messages) == 1


def load_state_run(env: dict[str, str]) -> str:
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return load_state(instance)["customers"]["hillcrest-academy"]["run_id"]


def test_the_body_scan_catches_the_student_a_failed_run_quotes(
    demo_identifiers: dict[str, re.Pattern[str]],
) -> None:
    """The scan is no formality: the record and email the stand-in failure quotes (as a
    connector's bad-input message does) are caught by it."""
    quoted = f"record {LEAK['record']}: {LEAK['email']} is not an email address"
    assert demo_identifiers["sourcedId"].search(quoted)
    assert demo_identifiers["email"].search(quoted)


def test_a_customers_own_alerts_block_overrides_the_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, webhook: WebhookServer
) -> None:
    """The settings' `alerts` block (validated with the settings): a muted customer is
    evaluated but not alerted; a customer's threshold beats the deployment's default."""
    folder = tmp_path / "settings"
    write_customer(folder, "alpha", 1, alerts={"muted": True})
    write_customer(folder, "bravo", 2, alerts={"min_severity": {"default": "critical"}})
    write_customer(folder, "charlie", 3)
    bad = write_customer(folder, "delta", 4, alerts={"min_severity": {"no_such_rule": "low"}})
    monkeypatch.setenv("RECONCILIATION_SETTINGS_DIR", str(folder))
    settings = load_settings(folder, sources=False)
    assert [Path(e.file) for e in settings.errors] == [bad]
    assert "$.alerts.min_severity" in str(settings.errors[0])
    lines: list[str] = []
    with dg.DagsterInstance.ephemeral() as instance:
        findings = {"missing_data": {"high": 2}}
        run_night(instance, {"alpha": findings, "bravo": findings, "charlie": findings})
        alert_from_instance(instance, now=NIGHT_1, echo=lines.append)
    assert [m["text"].split(":")[1].strip() for m in webhook.messages] == [
        "Charlie district (charlie, staging)"
    ]
    quiet = "\n".join(lines)
    assert "alerts: alpha: nothing sent: muted in its settings ($.alerts.muted)" in quiet
    assert "alerts: bravo: nothing sent: nothing at or above the alert thresholds" in quiet
