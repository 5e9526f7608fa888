"""Who may do what in the Dagster UI, decided on the GraphQL operations themselves (the page
only hides buttons; a hand-made request must be refused just the same). Pure: no I/O.

`analyze(query, variables)` parses the document with graphql-core and lists what each
top-level mutation field does (launch, re-execute, terminate, diagnose, schedule, sensor,
other), for which customers (the `dagster/partition` tag, a partition list, a `customer_id`
in the run config) and which earlier runs (a re-execution's parent, a terminated run) the
gateway must look up. Every operation of the document counts, whatever `operationName`
says, so a document cannot smuggle a mutation past the check. `decide(...)` applies the
roles: viewer reads only; engineer launches, re-executes, terminates and diagnoses for
staging customers; admin also production, schedules, sensors and everything else. A
production launch needs a sign-in from the last `STEP_UP_SECONDS`. `may_read_report(...)`
says who may download a customer's report through the gateway.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import graphql
import yaml
from graphql.language import ast
from graphql.utilities import value_from_ast_untyped

STEP_UP_SECONDS = 10 * 60
#: the tag every launched run carries: who launched it
USER_TAG = "reconciliation/launched_by"
PARTITION_TAG = "dagster/partition"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
DIAGNOSIS_JOB = "diagnose_student"
#: run config keys that name the person of a diagnosis (for the audit trail)
PERSON_KEYS = ("student", "parent_email", "student_id", "person_id", "sis_id", "person")

LAUNCH_FIELDS = {"launchPipelineExecution", "launchRun"}
REEXECUTE_FIELDS = {"launchPipelineReexecution", "launchRunReexecution"}
TERMINATE_FIELDS = {"terminatePipelineExecution", "terminateRun", "terminateRuns"}
SCHEDULE_FIELDS = {"startSchedule", "stopRunningSchedule", "resetSchedule", "scheduleDryRun"}
SENSOR_FIELDS = {"startSensor", "stopSensor", "resetSensor", "setSensorCursor", "sensorDryRun"}
#: the UI's own bookkeeping; harmless, but still no mutation for a viewer
UI_FIELDS = {"setNuxSeen", "logTelemetry"}
#: actions that start a run, so they carry the user's tag and may need a step-up
LAUNCHES = ("launch", "reexecute", "diagnose")

ROLE_RANK = {"viewer": 0, "engineer": 1, "admin": 2}


class PolicyError(ValueError):
    """A request the gateway cannot check, hence refuses (unparsable, literal parameters)."""


@dataclass(frozen=True)
class Mutation:
    """One top-level mutation field and what it would do."""

    field: str
    action: str  # launch | reexecute | terminate | diagnose | schedule | sensor | ui | other
    job: str | None = None
    customers: frozenset[str] = frozenset()
    #: the customer cannot be told from the request (a range, every partition, a backfill id)
    unknown_customer: bool = False
    run_ids: tuple[str, ...] = ()  # runs whose customer the gateway looks up
    person: str | None = None
    #: where the user's tag goes: (variable name, index in a list variable or None, key)
    tag_slots: tuple[tuple[str, int | None, str], ...] = ()


@dataclass(frozen=True)
class Analysis:
    operation_types: frozenset[str]  # 'query' | 'mutation' | 'subscription'
    mutations: tuple[Mutation, ...] = ()

    @property
    def is_mutation(self) -> bool:
        return "mutation" in self.operation_types


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    step_up: bool = False  # refused only for want of a fresh sign-in


def analyze(query: str, variables: Mapping[str, Any] | None = None) -> Analysis:
    """What the document does. Raises PolicyError when it cannot be parsed."""
    try:
        document = graphql.parse(query)
    except graphql.GraphQLError as exc:
        raise PolicyError(f"the GraphQL document does not parse: {exc.message}") from None
    variables = dict(variables or {})
    operations = [d for d in document.definitions if isinstance(d, ast.OperationDefinitionNode)]
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, ast.FragmentDefinitionNode)
    }
    types = frozenset(op.operation.value for op in operations)
    mutations: list[Mutation] = []
    for operation in operations:
        if operation.operation is ast.OperationType.MUTATION:
            for node in _top_fields(operation.selection_set, fragments, set()):
                mutations.extend(_mutation(node, variables))
    return Analysis(types, tuple(mutations))


def _top_fields(
    selections: ast.SelectionSetNode,
    fragments: Mapping[str, ast.FragmentDefinitionNode],
    seen: set[str],
) -> Iterable[ast.FieldNode]:
    """The root fields, through fragment spreads and inline fragments."""
    for selection in selections.selections:
        if isinstance(selection, ast.FieldNode):
            yield selection
        elif isinstance(selection, ast.InlineFragmentNode):
            yield from _top_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, ast.FragmentSpreadNode):
            name = selection.name.value
            if name in seen:
                continue
            seen.add(name)
            fragment = fragments.get(name)
            if fragment is None:
                raise PolicyError(f"fragment {name!r} is not defined")
            yield from _top_fields(fragment.selection_set, fragments, seen)


def _argument(node: ast.FieldNode, name: str, variables: Mapping[str, Any]) -> Any:
    for argument in node.arguments or ():
        if argument.name.value == name:
            return value_from_ast_untyped(argument.value, variables)
    return None


def _variable_of(node: ast.FieldNode, name: str) -> str | None:
    """The variable an argument is passed as; PolicyError for a literal (no tag can be added
    to it without rewriting the document, and the UI always passes variables)."""
    for argument in node.arguments or ():
        if argument.name.value == name:
            if isinstance(argument.value, ast.VariableNode):
                return argument.value.name.value
            raise PolicyError(
                f"{node.name.value}: pass {name} as a GraphQL variable (${name}), not inline"
            )
    return None


def _mutation(node: ast.FieldNode, variables: Mapping[str, Any]) -> list[Mutation]:
    name = node.name.value
    if name in LAUNCH_FIELDS:
        variable = _variable_of(node, "executionParams")
        params = _argument(node, "executionParams", variables) or {}
        return [_launch(name, params, (variable, None, "executionMetadata"))]
    if name == "launchMultipleRuns":
        variable = _variable_of(node, "executionParamsList")
        params_list = _argument(node, "executionParamsList", variables) or []
        return [
            _launch(name, params, (variable, index, "executionMetadata"))
            for index, params in enumerate(params_list)
        ]
    if name in REEXECUTE_FIELDS:
        execution = _argument(node, "executionParams", variables)
        if execution:
            variable = _variable_of(node, "executionParams")
            launched = _launch(name, execution, (variable, None, "executionMetadata"))
            return [replace(launched, action="reexecute")]
        variable = _variable_of(node, "reexecutionParams")
        params = _argument(node, "reexecutionParams", variables) or {}
        parent = params.get("parentRunId")
        return [
            Mutation(
                name,
                "reexecute",
                run_ids=(str(parent),) if parent else (),
                unknown_customer=not parent,
                tag_slots=((variable, None, "extraTags"),) if variable else (),
            )
        ]
    if name in TERMINATE_FIELDS:
        ids = _argument(node, "runIds", variables) if name == "terminateRuns" else None
        if ids is None:
            run_id = _argument(node, "runId", variables)
            ids = [run_id] if run_id else []
        return [
            Mutation(
                name,
                "terminate",
                run_ids=tuple(str(i) for i in ids),
                unknown_customer=not ids,
            )
        ]
    if name == "launchPartitionBackfill":
        variable = _variable_of(node, "backfillParams")
        params = _argument(node, "backfillParams", variables) or {}
        partitions = params.get("partitionNames") or []
        job = ((params.get("selector") or {}).get("partitionSetName")) or None
        unknown = bool(
            params.get("allPartitions") or params.get("partitionsByAssets") or not partitions
        )
        return [
            Mutation(
                name,
                "launch",
                job=job,
                customers=frozenset(str(p) for p in partitions),
                unknown_customer=unknown,
                tag_slots=((variable, None, "tags"),) if variable else (),
            )
        ]
    if name in SCHEDULE_FIELDS:
        return [Mutation(name, "schedule", unknown_customer=True)]
    if name in SENSOR_FIELDS:
        return [Mutation(name, "sensor", unknown_customer=True)]
    if name in UI_FIELDS:
        return [Mutation(name, "ui")]
    return [Mutation(name, "other", unknown_customer=True)]


def _launch(
    name: str, params: Mapping[str, Any], slot: tuple[str | None, int | None, str]
) -> Mutation:
    params = params if isinstance(params, Mapping) else {}
    selector = params.get("selector") or {}
    job = selector.get("jobName") or selector.get("pipelineName")
    metadata = params.get("executionMetadata") or {}
    tags = {
        t.get("key"): t.get("value") for t in metadata.get("tags") or () if isinstance(t, Mapping)
    }
    customers, unknown = customers_of(tags, params.get("runConfigData"))
    parent = metadata.get("parentRunId") or metadata.get("rootRunId")
    action = "diagnose" if job == DIAGNOSIS_JOB else "reexecute" if parent else "launch"
    variable, index, key = slot
    return Mutation(
        name,
        action,
        job=job,
        customers=customers,
        unknown_customer=unknown,
        run_ids=(str(parent),) if parent else (),
        person=_person(params.get("runConfigData")) if action == "diagnose" else None,
        tag_slots=((variable, index, key),) if variable else (),
    )


def _run_config(config: Any) -> Any:
    """Run config as sent (an object, or YAML/JSON text)."""
    if isinstance(config, str):
        try:
            return yaml.safe_load(config)
        except yaml.YAMLError:
            raise PolicyError("the run config is not valid YAML") from None
    return config


def _values_of(config: Any, keys: Iterable[str]) -> list[str]:
    wanted = set(keys)
    found: list[str] = []
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            for key, value in item.items():
                if key in wanted and isinstance(value, str | int) and not isinstance(value, bool):
                    found.append(str(value))
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return found


def customers_of(tags: Mapping[str, Any], run_config: Any) -> tuple[frozenset[str], bool]:
    """The customers a run is for (partition tag, `customer_id` in its run config), and
    whether they cannot be told (a partition range)."""
    customers = set(_values_of(_run_config(run_config), ["customer_id"]))
    if tags.get(PARTITION_TAG):
        customers.add(str(tags[PARTITION_TAG]))
    ranged = any(tags.get(tag) for tag in RANGE_TAGS)
    return frozenset(customers), ranged


def _person(run_config: Any) -> str | None:
    """The first filled person key, in `PERSON_KEYS` order (diagnose_student's config has
    `student` and `parent_email`, one of them empty)."""
    config = _run_config(run_config)
    for key in PERSON_KEYS:
        found = [value for value in _values_of(config, [key]) if value.strip()]
        if found:
            return found[0]
    return None


def with_run_customers(
    mutation: Mutation, runs: Mapping[str, tuple[frozenset[str], bool] | None]
) -> Mutation:
    """Adds the customers of the runs it refers to (`runs[run_id]` as `customers_of` gives
    them, None for a run the webserver does not know)."""
    customers = set(mutation.customers)
    unknown = mutation.unknown_customer
    for run_id in mutation.run_ids:
        found = runs.get(run_id)
        if found is None:
            unknown = True
            continue
        customers |= found[0]
        unknown = unknown or found[1] or not found[0]
    return replace(mutation, customers=frozenset(customers), unknown_customer=unknown)


def decide(
    role: str,
    mutations: Iterable[Mutation],
    environments: Mapping[str, str],
    signed_in_seconds_ago: float,
) -> Decision:
    """Whether a user of `role` may send these mutations (all of them, or none)."""
    rank = ROLE_RANK.get(role, -1)
    step_up_needed = False
    for m in mutations:
        if rank < ROLE_RANK["engineer"]:
            return Decision(False, f"{role or 'this account'} is read-only: {m.field} refused")
        if m.action == "ui":
            continue
        if m.action not in (*LAUNCHES, "terminate"):
            if rank < ROLE_RANK["admin"]:
                return Decision(False, f"{m.field} ({m.action}) needs the admin role")
            continue
        envs = {c: environments.get(c) for c in m.customers}
        unknown = m.unknown_customer or not m.customers or None in envs.values()
        what = f"{m.field} ({m.action}{f' of {m.job}' if m.job else ''})"
        if unknown and rank < ROLE_RANK["admin"]:
            named = ", ".join(sorted(c for c, e in envs.items() if e is None))
            why = f"unknown customer(s) {named}" if named else "its customer cannot be told"
            return Decision(False, f"{what} refused: {why} (only an admin may)")
        production = sorted(c for c, e in envs.items() if e == "production")
        if production and rank < ROLE_RANK["admin"]:
            return Decision(
                False,
                f"{what} for production customer {', '.join(production)} needs the admin role",
            )
        if m.action in LAUNCHES and (production or unknown):
            step_up_needed = step_up_needed or signed_in_seconds_ago > STEP_UP_SECONDS
    if step_up_needed:
        return Decision(
            False,
            f"a production launch needs a sign-in from the last {STEP_UP_SECONDS // 60} "
            "minutes: sign in again (/auth/step-up)",
            step_up=True,
        )
    return Decision(True)


def may_read_report(role: str, environment: str | None) -> Decision:
    """Whether a user of `role` may download a report of a customer in `environment`
    ('staging', 'production', None when its settings are missing or invalid).

    Reports are student data, so the rule follows the launches': a viewer reads staging
    customers' reports only; an engineer reads staging and production (support works from
    production reports, without launching there; no step-up, a download changes nothing);
    a customer whose environment cannot be told is for admins only."""
    rank = ROLE_RANK.get(role, -1)
    if rank < 0:
        return Decision(False, f"{role or 'this account'} has no role that reads reports")
    if environment is None:
        if rank < ROLE_RANK["admin"]:
            return Decision(False, "the customer's environment cannot be told (only an admin may)")
        return Decision(True)
    if environment != "staging" and rank < ROLE_RANK["engineer"]:
        return Decision(False, f"a {environment} customer's reports need the engineer role")
    return Decision(True)


def tag_with_user(variables: Mapping[str, Any], mutations: Iterable[Mutation], user: str) -> dict:
    """The variables with `USER_TAG=user` on every run the mutations launch (replacing any tag
    of that key the request carried: a user cannot launch in someone else's name)."""
    result = copy.deepcopy(dict(variables))
    for m in mutations:
        if m.action not in LAUNCHES:
            continue
        if not m.tag_slots:
            raise PolicyError(f"{m.field}: its parameters must be GraphQL variables")
        for variable, index, key in m.tag_slots:
            target = result.get(variable)
            if index is not None:
                target = target[index] if isinstance(target, list) else None
            if not isinstance(target, dict):
                raise PolicyError(f"{m.field}: ${variable} is not an object")
            if key == "executionMetadata":
                metadata = target.get("executionMetadata")
                if not isinstance(metadata, dict):
                    metadata = target["executionMetadata"] = {}
                holder, list_key = metadata, "tags"
            else:
                holder, list_key = target, key
            tags = [t for t in holder.get(list_key) or [] if t.get("key") != USER_TAG]
            holder[list_key] = [*tags, {"key": USER_TAG, "value": user}]
    return result


def parse_variables(raw: Any) -> dict[str, Any]:
    """Variables as the webserver reads them: an object, JSON text, or nothing."""
    if raw in (None, ""):
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise PolicyError("the GraphQL variables are not valid JSON") from None
    if not isinstance(raw, dict):
        raise PolicyError("the GraphQL variables are not an object")
    return raw
