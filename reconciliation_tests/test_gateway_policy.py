"""The secured UI's policy on GraphQL documents (reconciliation/gateway/policy.py): pure, no
server. The documents are the Dagster UI's own mutations (names, variables, shapes of
dagster-graphql 1.13), plus hand-made ones a user could send around the page."""

from __future__ import annotations

from typing import Any

import pytest

from reconciliation.gateway import policy

ENVIRONMENTS = {"maple-charter": "staging", "lincoln-usd": "production"}
FRESH, STALE = 60.0, policy.STEP_UP_SECONDS + 1.0

LAUNCH = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename ... on LaunchRunSuccess { run { id runId } }
  }
}"""
REEXECUTE = """
mutation LaunchPipelineReexecution($reexecutionParams: ReexecutionParams) {
  launchPipelineReexecution(reexecutionParams: $reexecutionParams) { __typename }
}"""
TERMINATE = """
mutation Terminate($runIds: [String!]!) { terminateRuns(runIds: $runIds) { __typename } }"""
START_SCHEDULE = """
mutation StartThisSchedule($scheduleSelector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $scheduleSelector) { __typename }
}"""


def launch_params(
    customer: str | None = "maple-charter", job: str = "reconcile_customer", **extra: Any
) -> dict[str, Any]:
    tags = [{"key": "dagster/partition", "value": customer}] if customer else []
    return {
        "executionParams": {
            "selector": {
                "jobName": job,
                "repositoryName": "__repository__",
                "repositoryLocationName": "reconciliation",
            },
            "runConfigData": extra.pop("run_config", {}),
            "executionMetadata": {"tags": tags, **extra},
        }
    }


def decide(role: str, query: str, variables: dict[str, Any], age: float = FRESH) -> policy.Decision:
    analysis = policy.analyze(query, variables)
    return policy.decide(role, analysis.mutations, ENVIRONMENTS, age)


def test_queries_and_subscriptions_are_not_mutations() -> None:
    for document in (
        "query RunsRoot { runsOrError { __typename } }",
        "{ version }",
        "subscription S($runId: ID!) { pipelineRunLogs(runId: $runId) { __typename } }",
    ):
        analysis = policy.analyze(document)
        assert not analysis.is_mutation and not analysis.mutations


def test_a_viewer_is_refused_every_mutation_even_the_uis_own() -> None:
    assert not decide("viewer", LAUNCH, launch_params()).allowed
    assert not decide("viewer", "mutation { setNuxSeen }", {}).allowed
    assert "read-only" in decide("viewer", LAUNCH, launch_params()).reason


def test_an_engineer_launches_for_staging_but_not_production() -> None:
    assert decide("engineer", LAUNCH, launch_params("maple-charter")).allowed
    refused = decide("engineer", LAUNCH, launch_params("lincoln-usd"))
    assert not refused.allowed and not refused.step_up
    assert "production customer lincoln-usd needs the admin role" in refused.reason


def test_an_unknown_or_missing_customer_is_refused_for_non_admins_only() -> None:
    for variables in (launch_params(None), launch_params("nobody-usd")):
        refused = decide("engineer", LAUNCH, variables)
        assert not refused.allowed and "only an admin may" in refused.reason
    # an admin may, after a fresh sign-in (the customer could be a production one)
    assert decide("admin", LAUNCH, launch_params("nobody-usd")).allowed
    assert decide("admin", LAUNCH, launch_params("nobody-usd"), STALE).step_up


def test_a_partition_range_is_an_unknown_customer() -> None:
    variables = launch_params(None)
    variables["executionParams"]["executionMetadata"]["tags"] = [
        {"key": "dagster/asset_partition_range_start", "value": "lincoln-usd"},
        {"key": "dagster/asset_partition_range_end", "value": "maple-charter"},
    ]
    assert not decide("engineer", LAUNCH, variables).allowed


def test_a_production_launch_needs_a_sign_in_from_the_last_ten_minutes() -> None:
    assert decide("admin", LAUNCH, launch_params("lincoln-usd"), FRESH).allowed
    stale = decide("admin", LAUNCH, launch_params("lincoln-usd"), STALE)
    assert not stale.allowed and stale.step_up and "/auth/step-up" in stale.reason
    # staging needs no step-up
    assert decide("engineer", LAUNCH, launch_params("maple-charter"), STALE).allowed


def test_the_customer_in_the_run_config_counts_too_so_tags_cannot_hide_it() -> None:
    variables = launch_params(
        "maple-charter",
        job="diagnose_student",
        run_config={"ops": {"diagnose": {"config": {"customer_id": "lincoln-usd"}}}},
    )
    analysis = policy.analyze(LAUNCH, variables)
    assert analysis.mutations[0].action == "diagnose"
    assert analysis.mutations[0].customers == {"maple-charter", "lincoln-usd"}
    assert not decide("engineer", LAUNCH, variables).allowed


def test_a_diagnosis_by_parent_email_names_that_person() -> None:
    config = {
        "ops": {
            "diagnose": {
                "config": {
                    "customer_id": "maple-charter",
                    "student": "",
                    "parent_email": "pat@example.org",
                }
            }
        }
    }
    variables = launch_params(None, job="diagnose_student", run_config=config)
    assert policy.analyze(LAUNCH, variables).mutations[0].person == "pat@example.org"


def test_a_diagnosis_names_its_customer_and_person_from_yaml_run_config() -> None:
    config = (
        "ops:\n  diagnose:\n    config:\n      customer_id: maple-charter\n"
        "      student_id: stu-7\n"
    )
    variables = launch_params(None, job="diagnose_student", run_config=config)
    mutation = policy.analyze(LAUNCH, variables).mutations[0]
    assert (mutation.action, mutation.customers, mutation.person) == (
        "diagnose",
        {"maple-charter"},
        "stu-7",
    )
    assert decide("engineer", LAUNCH, variables).allowed


def test_schedules_sensors_and_other_mutations_are_for_admins() -> None:
    selector = {"scheduleSelector": {"scheduleName": "nightly_scan"}}
    assert not decide("engineer", START_SCHEDULE, selector).allowed
    assert decide("admin", START_SCHEDULE, selector).allowed
    for document in (
        'mutation { stopSensor(id: "x") { __typename } }',
        "mutation { wipeAssets(assetPartitionRanges: []) { __typename } }",
        'mutation { deleteRun(runId: "r") { __typename } }',
    ):
        assert not decide("engineer", document, {}).allowed
        assert decide("admin", document, {}).allowed


def test_every_operation_of_a_document_counts_whatever_operationName_says() -> None:
    document = "query Harmless { version }\n" + LAUNCH
    assert policy.analyze(document, launch_params()).is_mutation
    assert not decide("viewer", document, launch_params()).allowed


def test_fragments_and_aliases_do_not_hide_a_mutation() -> None:
    document = """
    mutation M($p: ExecutionParams!) { ...Launch }
    fragment Launch on Mutation { innocent: launchRun(executionParams: $p) { __typename } }
    """
    variables = {"p": launch_params("lincoln-usd")["executionParams"]}
    mutation = policy.analyze(document, variables).mutations[0]
    assert (mutation.field, mutation.customers) == ("launchRun", {"lincoln-usd"})
    assert not decide("engineer", document, variables).allowed


def test_unparsable_documents_and_inline_launch_parameters_are_refused() -> None:
    with pytest.raises(policy.PolicyError, match="does not parse"):
        policy.analyze("mutation { launchRun(")
    inline = """mutation { launchRun(executionParams: {selector: {jobName: "reconcile_customer",
      repositoryName: "r", repositoryLocationName: "l"}, executionMetadata: {tags: [
      {key: "dagster/partition", value: "maple-charter"}]}}) { __typename } }"""
    with pytest.raises(policy.PolicyError, match="as a GraphQL variable"):
        policy.analyze(inline)


def test_reexecution_and_termination_take_the_customer_of_their_runs() -> None:
    reexecute = {"reexecutionParams": {"parentRunId": "run-1", "strategy": "ALL_STEPS"}}
    mutation = policy.analyze(REEXECUTE, reexecute).mutations[0]
    assert (mutation.action, mutation.run_ids) == ("reexecute", ("run-1",))
    staging = policy.with_run_customers(mutation, {"run-1": (frozenset({"maple-charter"}), False)})
    production = policy.with_run_customers(mutation, {"run-1": (frozenset({"lincoln-usd"}), False)})
    unknown = policy.with_run_customers(mutation, {"run-1": None})
    assert policy.decide("engineer", [staging], ENVIRONMENTS, FRESH).allowed
    assert not policy.decide("engineer", [production], ENVIRONMENTS, FRESH).allowed
    assert not policy.decide("engineer", [unknown], ENVIRONMENTS, FRESH).allowed

    terminate = policy.analyze(TERMINATE, {"runIds": ["run-1", "run-2"]}).mutations[0]
    assert terminate.action == "terminate" and terminate.run_ids == ("run-1", "run-2")
    both = policy.with_run_customers(
        terminate,
        {
            "run-1": (frozenset({"maple-charter"}), False),
            "run-2": (frozenset({"lincoln-usd"}), False),
        },
    )
    assert not policy.decide("engineer", [both], ENVIRONMENTS, FRESH).allowed
    # terminating a production run is no launch: an admin needs no step-up for it
    assert policy.decide("admin", [both], ENVIRONMENTS, STALE).allowed


def test_customers_of_a_run_from_tags_and_yaml_run_config() -> None:
    assert policy.customers_of({"dagster/partition": "maple-charter"}, "{}\n") == (
        frozenset({"maple-charter"}),
        False,
    )
    assert policy.customers_of({}, "ops:\n  x:\n    config:\n      customer_id: lincoln-usd\n")[
        0
    ] == {"lincoln-usd"}


def test_launches_are_tagged_with_the_user_replacing_a_forged_tag() -> None:
    variables = launch_params()
    variables["executionParams"]["executionMetadata"]["tags"].append(
        {"key": policy.USER_TAG, "value": "someone-else"}
    )
    analysis = policy.analyze(LAUNCH, variables)
    tagged = policy.tag_with_user(variables, analysis.mutations, "ann@example.org")
    tags = tagged["executionParams"]["executionMetadata"]["tags"]
    assert [t for t in tags if t["key"] == policy.USER_TAG] == [
        {"key": policy.USER_TAG, "value": "ann@example.org"}
    ]
    assert {"key": "dagster/partition", "value": "maple-charter"} in tags
    # the request's own variables are left as they were
    assert {"key": policy.USER_TAG, "value": "someone-else"} in (
        variables["executionParams"]["executionMetadata"]["tags"]
    )

    reexecute = {"reexecutionParams": {"parentRunId": "run-1", "strategy": "FROM_FAILURE"}}
    mutations = policy.analyze(REEXECUTE, reexecute).mutations
    extra = policy.tag_with_user(reexecute, mutations, "ann")["reexecutionParams"]["extraTags"]
    assert extra == [{"key": policy.USER_TAG, "value": "ann"}]


def test_launch_multiple_runs_and_backfills_check_every_customer() -> None:
    document = """mutation M($executionParamsList: [ExecutionParams!]!) {
      launchMultipleRuns(executionParamsList: $executionParamsList) { __typename } }"""
    variables = {
        "executionParamsList": [
            launch_params("maple-charter")["executionParams"],
            launch_params("lincoln-usd")["executionParams"],
        ]
    }
    assert len(policy.analyze(document, variables).mutations) == 2
    assert not decide("engineer", document, variables).allowed

    backfill = """mutation B($backfillParams: LaunchBackfillParams!) {
      launchPartitionBackfill(backfillParams: $backfillParams) { __typename } }"""
    params = {"backfillParams": {"partitionNames": ["maple-charter"], "selector": {}}}
    assert decide("engineer", backfill, params).allowed
    tagged = policy.tag_with_user(params, policy.analyze(backfill, params).mutations, "ann")
    assert tagged["backfillParams"]["tags"] == [{"key": policy.USER_TAG, "value": "ann"}]
    every = {"backfillParams": {"allPartitions": True, "selector": {}}}
    assert not decide("engineer", backfill, every).allowed


def test_variables_as_the_webserver_reads_them() -> None:
    assert policy.parse_variables('{"a": 1}') == {"a": 1}
    assert policy.parse_variables(None) == {}
    with pytest.raises(policy.PolicyError):
        policy.parse_variables("{not json")
