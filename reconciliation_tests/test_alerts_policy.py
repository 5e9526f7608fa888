"""The alert policy over simulated nights: only new or worse alerts, reminders for critical
findings left open, a digest when many customers need attention, recovered customers
leave the state (pure: no servers, no Dagster)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from reconciliation.alerts.policy import (
    SEVERITIES,
    CustomerOverrides,
    CustomerResult,
    Evaluation,
    Policy,
    evaluate,
    rule_counts_from_checks,
)

NIGHT_1 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def night(n: int) -> datetime:
    return NIGHT_1 + timedelta(days=n - 1)


def ok(customer: str, n: int, **rules: dict[str, int]) -> CustomerResult:
    return CustomerResult(customer, f"run-{customer}-{n}", "ok", night(n), rules)


def failed(customer: str, n: int, outcome: str = "failed") -> CustomerResult:
    line = "cannot reach the SIS (ConnectionError)" if outcome == "failed" else "HELD: users 0 rows"
    return CustomerResult(customer, f"run-{customer}-{n}", outcome, night(n), error_line=line)


def reasons(evaluation: Evaluation) -> dict[str, tuple[str, ...]]:
    return {alert.customer_id: alert.reasons for alert in evaluation.alerts}


def test_three_nights_dedup_worsened_reminder_and_recovery() -> None:
    policy = Policy(reminder_days=2)

    first = evaluate(
        [
            ok("anvil", 1, missing_data={"high": 3}, field_mismatch={"medium": 5}),
            ok("birch", 1, parent_email_conflict={"critical": 2}),
            failed("cedar", 1),
            ok("delta", 1),
        ],
        None,
        policy,
        night(1),
    )
    assert reasons(first) == {
        "anvil": ("missing_data new",),
        "birch": ("parent_email_conflict new",),
        "cedar": ("run failed",),
    }
    assert first.quiet == {"delta": "nothing at or above the alert thresholds"}
    assert not first.digest
    anvil = first.alerts[0]
    assert [(c.rule, c.change) for c in anvil.rules] == [("missing_data", "new")]
    assert anvil.below_threshold == 5  # field_mismatch's medium findings: counted, not listed
    assert anvil.problems == ("missing_data",) and first.alerts[2].problems == ("run",)
    assert set(first.state["customers"]) == {"anvil", "birch", "cedar"}

    # the state crosses nights as JSON (a sensor cursor or the instance's key-value store)
    stored = json.loads(json.dumps(first.state))
    second = evaluate(
        [
            ok("anvil", 2, missing_data={"high": 3}, field_mismatch={"medium": 9}),
            ok("birch", 2, parent_email_conflict={"critical": 2}),
            failed("cedar", 2),
            ok("delta", 2, stale_record={"high": 1}),
        ],
        stored,
        policy,
        night(2),
    )
    assert reasons(second) == {"delta": ("stale_record new",)}
    assert second.quiet == {
        "anvil": "nothing new or worse since the last evaluation",
        "birch": "nothing new or worse since the last evaluation",
        "cedar": "run still failed, already alerted",
    }

    third = evaluate(
        [
            ok("anvil", 3, missing_data={"critical": 1, "high": 2}),
            ok("birch", 3, parent_email_conflict={"critical": 2}),
            ok("cedar", 3),
            ok("delta", 3),
        ],
        json.loads(json.dumps(second.state)),
        policy,
        night(3),
    )
    assert reasons(third) == {
        # one more critical, one fewer high: the same total, but worse
        "anvil": ("missing_data worsened",),
        "birch": ("parent_email_conflict critical findings still open after 2 days",),
    }
    assert [a.kind for a in third.alerts] == ["alert", "reminder"]
    assert third.alerts[1].open_days == {"parent_email_conflict": 2}
    # recovered customers leave the state
    assert set(third.state["customers"]) == {"anvil", "birch"}
    assert third.quiet == {
        "cedar": "run succeeded again (was failed), nothing at or above the alert thresholds",
        "delta": "recovered: nothing at or above the alert thresholds",
    }
    # the reminder restarted birch's clock: no reminder the next night
    fourth = evaluate(
        [ok("birch", 4, parent_email_conflict={"critical": 2})], third.state, policy, night(4)
    )
    assert not fourth.alerts


def test_fewer_findings_alert_nobody_and_more_again_do() -> None:
    state = evaluate([ok("anvil", 1, missing_data={"high": 5})], None, Policy(), night(1)).state
    better = evaluate([ok("anvil", 2, missing_data={"high": 3})], state, Policy(), night(2))
    assert not better.alerts
    worse = evaluate([ok("anvil", 3, missing_data={"high": 4})], better.state, Policy(), night(3))
    (alert,) = worse.alerts
    (change,) = alert.rules
    assert (change.change, change.alerting(), change.alerting(change.previous)) == (
        "worsened",
        {"high": 4},
        {"high": 3},
    )


def test_resolved_rules_are_listed_with_the_ones_that_alert() -> None:
    state = evaluate([ok("anvil", 1, stale_record={"high": 2})], None, Policy(), night(1)).state
    (alert,) = evaluate(
        [ok("anvil", 2, missing_data={"critical": 1})], state, Policy(), night(2)
    ).alerts
    assert [(c.rule, c.change) for c in alert.rules] == [
        ("missing_data", "new"),
        ("stale_record", "resolved"),
    ]
    assert alert.problems == ("missing_data",)


def test_a_failed_run_keeps_the_findings_and_its_recovery_is_quiet() -> None:
    policy = Policy()
    state = evaluate([ok("anvil", 1, missing_data={"high": 3})], None, policy, night(1)).state
    down = evaluate([failed("anvil", 2)], state, policy, night(2))
    (alert,) = down.alerts
    assert (alert.reasons, alert.error_line, alert.previous_outcome) == (
        ("run failed",),
        "cannot reach the SIS (ConnectionError)",
        "ok",
    )
    # the last successful run's findings are still the customer's
    assert [(c.rule, c.change) for c in alert.rules] == [("missing_data", "unchanged")]
    held = evaluate([failed("anvil", 3, "held")], down.state, policy, night(3))
    assert reasons(held) == {"anvil": ("run held",)}  # a change of reason alerts again
    back = evaluate([ok("anvil", 4, missing_data={"high": 3})], held.state, policy, night(4))
    assert not back.alerts
    assert back.quiet == {
        "anvil": "run succeeded again (was held), nothing new or worse since the last evaluation"
    }


def test_a_run_that_stays_failed_is_reminded_after_the_reminder_days() -> None:
    policy = Policy(reminder_days=3)
    state = evaluate([failed("cedar", 1)], None, policy, night(1)).state
    for n in (2, 3):
        evaluation = evaluate([failed("cedar", n)], state, policy, night(n))
        assert not evaluation.alerts
        state = evaluation.state
    (reminder,) = evaluate([failed("cedar", 4)], state, policy, night(4)).alerts
    assert (reminder.kind, reminder.reasons) == ("reminder", ("run still failed after 3 days",))


def test_critical_reminder_waits_seven_days_by_default() -> None:
    policy = Policy()
    state = evaluate(
        [ok("birch", 1, parent_email_conflict={"critical": 1})], None, policy, night(1)
    ).state
    for n in range(2, 8):
        evaluation = evaluate(
            [ok("birch", n, parent_email_conflict={"critical": 1})], state, policy, night(n)
        )
        assert not evaluation.alerts, n
        state = evaluation.state
    (reminder,) = evaluate(
        [ok("birch", 8, parent_email_conflict={"critical": 1})], state, policy, night(8)
    ).alerts
    assert reminder.open_days == {"parent_email_conflict": 7}


def test_digest_when_more_customers_than_the_limit() -> None:
    five = [failed(f"c{i}", 1) for i in range(5)]
    assert not evaluate(five, None, Policy(), night(1)).digest
    six = evaluate([*five, failed("c5", 1)], None, Policy(), night(1))
    assert six.digest and len(six.alerts) == 6
    assert evaluate(five, None, Policy(digest_when_more_than=4), night(1)).digest


def test_thresholds_per_rule_and_per_customer() -> None:
    policy = Policy(min_severity={"default": "critical", "field_mismatch": "medium"})
    results = [
        ok("anvil", 1, missing_data={"high": 3}, field_mismatch={"medium": 2}),
        ok("birch", 1, missing_data={"high": 3}, field_mismatch={"medium": 2}),
    ]
    overrides = {"birch": CustomerOverrides(min_severity={"default": "high"})}
    evaluation = evaluate(results, None, policy, night(1), overrides)
    assert reasons(evaluation) == {
        "anvil": ("field_mismatch new",),  # missing_data's high is below critical here
        "birch": ("missing_data new",),  # birch's default is high, for every rule
    }
    assert policy.threshold("field_mismatch", overrides["birch"]) == "high"


def test_a_muted_customer_is_recorded_but_not_alerted() -> None:
    overrides = {"anvil": CustomerOverrides(muted=True)}
    first = evaluate(
        [ok("anvil", 1, missing_data={"high": 3})], None, Policy(), night(1), overrides
    )
    assert not first.alerts
    assert first.quiet == {"anvil": "muted in its settings ($.alerts.muted) (missing_data new)"}
    # unmuted the next night: only what is new since then alerts
    second = evaluate([ok("anvil", 2, missing_data={"high": 3})], first.state, Policy(), night(2))
    assert not second.alerts


def test_a_run_seen_twice_is_evaluated_once() -> None:
    result = ok("anvil", 1, missing_data={"high": 3})
    first = evaluate([result], None, Policy(), night(1))
    again = evaluate([result], first.state, Policy(), night(1) + timedelta(minutes=1))
    assert not again.alerts and again.state == first.state
    assert again.quiet == {"anvil": "run run-anvil-1 was already evaluated"}


def test_the_newest_run_of_a_customer_counts() -> None:
    evaluation = evaluate([ok("anvil", 2), failed("anvil", 1)], None, Policy(), night(2))
    assert not evaluation.alerts and evaluation.state["customers"] == {}


def test_deterministic_and_customers_without_a_run_keep_their_state() -> None:
    state = evaluate([failed("cedar", 1)], None, Policy(), night(1)).state
    results = [ok("anvil", 2, missing_data={"high": 1}, stale_record={"critical": 2})]
    one = evaluate(results, state, Policy(), night(2))
    two = evaluate(list(reversed(results)), json.loads(json.dumps(state)), Policy(), night(2))
    assert one == two
    assert one.state["customers"]["cedar"] == state["customers"]["cedar"]
    assert json.loads(json.dumps(one.state)) == one.state


def test_severities_are_the_rules_severities() -> None:
    from reconciliation.rules.base import SEVERITIES as RULE_SEVERITIES

    assert SEVERITIES == RULE_SEVERITIES


def test_a_result_that_is_not_counts_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match=r"anvil: outcome 'crashed' is not one of ok, failed"):
        CustomerResult("anvil", "r", "crashed", night(1))
    with pytest.raises(ValueError, match=r"anvil: missing_data: 'severe'=3 is not a count"):
        CustomerResult("anvil", "r", "ok", night(1), {"missing_data": {"severe": 3}})


def test_rule_counts_from_the_checks_metadata() -> None:
    class Value:  # a Dagster MetadataValue holds its number in `.value`
        def __init__(self, value: int) -> None:
            self.value = value

    checks = [
        (
            "missing_data",
            False,
            {
                "findings": Value(5),
                "severity.critical": Value(1),
                "severity.high": Value(4),
                "status.ISSUE_IN_BOOKMARKED": 5,
            },
        ),
        ("stale_record", True, {"findings": 0}),
        ("field_mismatch", False, {"findings": 2, "severity.medium": 2}),
    ]
    assert rule_counts_from_checks(checks) == {
        "missing_data": {"critical": 1, "high": 4},
        "field_mismatch": {"medium": 2},
    }
