"""The words of the alerts: what a support engineer reads in Slack, email and HubSpot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconciliation.alerts.messages import (
    BLOCK_LIMIT,
    SECTION_LIMIT,
    customer_message,
    digest_message,
)
from reconciliation.alerts.policy import (
    CustomerAlert,
    CustomerProfile,
    CustomerResult,
    Evaluation,
    Policy,
    evaluate,
)
from reconciliation.credentials import CredentialResolver

NIGHT = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
POLICY = Policy(ui_base_url="https://dagster.example/", reminder_days=2)
RIVERSIDE = CustomerProfile("riverside-usd", "Riverside Unified", "production", "555")


def nights(*results: CustomerResult) -> list[Evaluation]:
    evaluations, state = [], None
    for result in results:
        evaluation = evaluate([result], state, POLICY, result.finished_at)
        evaluations.append(evaluation)
        state = evaluation.state
    return evaluations


def result(n: int, outcome: str = "ok", error: str | None = None, **rules) -> CustomerResult:
    return CustomerResult(
        "riverside-usd", f"run-{n}", outcome, NIGHT + timedelta(days=n), rules, error
    )


def only(evaluation: Evaluation) -> CustomerAlert:
    (alert,) = evaluation.alerts
    return alert


def test_first_night_then_what_changed() -> None:
    first, second = nights(
        result(0, missing_data={"critical": 3, "high": 16}, field_mismatch={"medium": 13}),
        result(
            1,
            missing_data={"critical": 3, "high": 19},
            parent_email_conflict={"critical": 9},
            field_mismatch={"high": 1, "medium": 13},
        ),
    )
    assert customer_message(only(first), RIVERSIDE, POLICY).text == (
        "Roster alert: Riverside Unified (riverside-usd, production): missing_data new\n"
        "Dagster run run-0 (ok, finished 2026-12-07 08:00 UTC): "
        "https://dagster.example/runs/run-0\n"
        "Findings at or above the alert thresholds (first evaluation):\n"
        "- missing_data: 3 critical, 16 high (was none): new\n"
        "Other rules: 13 findings below the thresholds (not alerted)."
    )
    assert customer_message(only(second), RIVERSIDE, POLICY).text == (
        "Roster alert: Riverside Unified (riverside-usd, production): parent_email_conflict "
        "new; missing_data worsened; field_mismatch new\n"
        "Dagster run run-1 (ok, finished 2026-12-08 08:00 UTC): "
        "https://dagster.example/runs/run-1\n"
        "Findings at or above the alert thresholds, tonight (was: last evaluation):\n"
        "- parent_email_conflict: 9 critical (was none): new\n"
        "- missing_data: 3 critical, 19 high (was 3 critical, 16 high): worsened, +3 high\n"
        "- field_mismatch: 1 high (was none): new; 13 below its threshold (high)\n"
        "Since the last evaluation: 2 rules new, 1 rule worsened."
    )


def test_a_failed_run_says_why_and_what_was_known() -> None:
    secret = CredentialResolver({"SIS_SECRET": "s3cr3t-value"}).resolve("env:SIS_SECRET")
    *_, failed = nights(
        result(0, stale_record={"high": 12}),
        result(
            1,
            "failed",
            f"source_roster: token endpoint refused client secret {secret.reveal()} (401)\n"
            "Traceback ...",
        ),
    )
    assert customer_message(only(failed), RIVERSIDE, POLICY).text == (
        "Roster alert: Riverside Unified (riverside-usd, production): run failed\n"
        "Dagster run run-1 (failed, finished 2026-12-08 08:00 UTC): "
        "https://dagster.example/runs/run-1\n"
        "Reason: source_roster: token endpoint refused client secret **** (401)\n"
        "Findings of the last successful run at or above the thresholds:\n"
        "- stale_record: 12 high"
    )


def test_a_reminder_and_no_link_without_a_ui() -> None:
    *_, third = nights(
        result(0, parent_email_conflict={"critical": 2}),
        result(1, parent_email_conflict={"critical": 2}),
        result(2, parent_email_conflict={"critical": 2}),
    )
    message = customer_message(only(third), CustomerProfile("riverside-usd"), Policy())
    assert message.kind == "reminder"
    assert message.text == (
        "Roster reminder: riverside-usd: parent_email_conflict critical findings still open "
        "after 2 days\n"
        "Dagster run run-2 (ok, finished 2026-12-09 08:00 UTC)\n"
        "Findings at or above the alert thresholds, tonight (was: last evaluation):\n"
        "- parent_email_conflict: 2 critical (was 2 critical): unchanged; critical findings "
        "open 2 days since the last alert\n"
        "Since the last evaluation: 1 rule unchanged."
    )
    assert [b["type"] for b in message.blocks] == ["header", "section"]  # no link, no context


def test_slack_blocks_escape_and_stay_within_limits() -> None:
    profile = CustomerProfile("lewis-clark", "Lewis & Clark <SD>", "staging")
    alert = only(nights(result(0, missing_data={"high": 1}))[0])
    blocks = customer_message(alert, profile, POLICY).blocks
    assert blocks[1]["text"]["text"].splitlines()[0] == ("Dagster run run-0 (ok)")
    assert blocks[0]["text"]["text"].startswith("Roster alert: Lewis & Clark <SD> (lewis-clark")
    assert "Lewis &amp; Clark &lt;SD&gt;" not in blocks[0]["text"]["text"]  # plain_text header
    digest = digest_message([alert], {"riverside-usd": profile}, POLICY)
    assert (
        digest.blocks[1]["text"]["text"]
        .splitlines()[1]
        .startswith("- Lewis &amp; Clark &lt;SD&gt; (lewis-clark, staging): missing_data new")
    )

    many = [
        CustomerAlert(
            f"district-{i:03d}",
            f"run-{i}",
            "alert",
            "failed",
            None,
            NIGHT,
            ("run failed",),
            # words, not "x" * 200: `redact` masks any value this process resolved (other
            # tests resolve short test secrets), which would change the text's length
            error_line="cannot reach the SIS (ConnectTimeout) "
            + " ".join(f"attempt{n}" for n in range(25)),
        )
        for i in range(600)
    ]
    digest = digest_message(many, {}, POLICY)
    assert len(digest.blocks) == BLOCK_LIMIT
    assert digest.blocks[-1]["text"]["text"].endswith("more blocks: see the message text")
    assert all(len(b["text"]["text"]) <= SECTION_LIMIT for b in digest.blocks[1:])
    assert digest.text.count("\n- district-") == 600  # the text keeps every customer


def test_digest_lists_failed_and_held_first() -> None:
    alerts = [
        only(evaluate([r], None, POLICY, NIGHT))
        for r in (
            CustomerResult("anvil", "run-a", "ok", NIGHT, {"missing_data": {"high": 2}}),
            CustomerResult("birch", "run-b", "held", NIGHT, error_line="HELD birch: users 0"),
            CustomerResult("cedar", "run-c", "failed", NIGHT, error_line="cannot reach"),
        )
    ]
    profiles = {"anvil": CustomerProfile("anvil", "Anvil USD", "production")}
    assert digest_message(alerts, profiles, POLICY).text == (
        "Roster alerts: 3 customers need attention\n"
        "More than 5 customers at once, so one digest instead of one message each.\n"
        "- cedar: run failed: cannot reach. Run run-c: https://dagster.example/runs/run-c\n"
        "- birch: run held: HELD birch: users 0. Run run-b: https://dagster.example/runs/run-b\n"
        "- Anvil USD (anvil, production): missing_data new (missing_data 2 high). "
        "Run run-a: https://dagster.example/runs/run-a"
    )
