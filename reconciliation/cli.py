"""`reconcile`: the command line of the reconciliation project.

    reconcile settings validate [--dir DIR]        every error of every file; exit 1 if any
    reconcile connections test --customer ID       open each connection; same customer?
    reconcile demo [--out DIR] [--force]           build the demo data (OneRoster + SQLite)
    reconcile scan [--customer ID ...] [--accept-hold] [--alert]   run the Dagster job per customer
    reconcile fleet [--dir DIR] [--csv PATH]       every customer's latest results, worst first

`scan` runs the same job, assets and checks as the Dagster UI, through a Dagster instance
(`$DAGSTER_HOME`, default `.dagster_home/` in the project), so its runs show in `make dev`.
It exits 0 when findings exist: findings are the product, not a failure. A held customer
(an export that looks empty or cut, or another district's data) is an outcome too. It
exits 1 only when a customer's run fails, after running every other customer.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reconciliation.paths import PROJECT_ROOT
from reconciliation.settings import CustomerSettings, load_settings

if TYPE_CHECKING:
    from reconciliation.credentials import CredentialResolver
    from reconciliation.scan import ScanOutcome

DEFAULT_DAGSTER_HOME = PROJECT_ROOT / ".dagster_home"
DEFAULT_DEMO_DIR = PROJECT_ROOT / "demo" / "data"
DAGSTER_YAML = """\
# Local Dagster instance for the embedded default (SQLite storage under this folder).
# Production uses deploy/dagster.postgres.yaml instead (same limits, larger).
#
# The run queue (runs from the UI and the nightly schedule; the daemon of `make dev`
# dequeues them). `reconcile scan` launches its runs past the queue, one at a time, so it
# never waits for a daemon.
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
concurrency:
  runs:
    max_concurrent_runs: 4
    tag_concurrency_limits:
      # at most 2 runs read one SIS host at a time (the tag is set from the settings)
      - key: reconciliation/source_host
        value:
          applyLimitPerUniqueValue: true
        limit: 2
  pools:
    # the bookmarked_database pool: concurrent readers of Bookmarked's database
    default_limit: 2
    granularity: op
# a run that never starts, or runs past its max runtime (the job's dagster/max_runtime
# tag: 1 h), is marked failed and its pool slots freed (needs the daemon)
run_monitoring:
  enabled: true
  start_timeout_seconds: 300
  max_runtime_seconds: 7200
  poll_interval_seconds: 60
  free_slots_after_run_end_seconds: 300
telemetry:
  enabled: false
"""


def _settings_dir(value: str | None) -> Path | None:
    return Path(value).resolve() if value else None


def cmd_settings_validate(args: argparse.Namespace) -> int:
    from reconciliation.settings import TEMPLATE_NAME

    folder = load_settings(_settings_dir(args.dir), include_template=True)
    for error in folder.errors:
        print(f"ERROR {error}")
    customers = [c for c in folder.customers.values() if c.path.name != TEMPLATE_NAME]
    template = folder.folder / TEMPLATE_NAME
    template_errors = [e for e in folder.errors if Path(e.file).name == TEMPLATE_NAME]
    customer_errors = len(folder.errors) - len(template_errors)
    print(
        f"{len(customers)} customer(s) valid, {customer_errors} error(s) in customer files "
        f"in {folder.folder}"
    )
    if template.exists():
        state = f"{len(template_errors)} error(s)" if template_errors else "valid"
        print(f"template: {TEMPLATE_NAME} {state}")
    return 1 if folder.errors else 0


def cmd_connections_test(args: argparse.Namespace) -> int:
    from reconciliation.connectors import ConnectorError, bookmarked_connector, source_connector
    from reconciliation.credentials import CredentialError, CredentialResolver, redact

    folder = load_settings(_settings_dir(args.dir))
    try:
        settings = folder.get(args.customer)
    except KeyError as exc:
        print(f"ERROR {exc.args[0]}")
        for error in folder.errors:
            print(f"ERROR {error}")
        return 1
    credentials = CredentialResolver()
    failed = 0
    for label, make in (("source", source_connector), ("bookmarked", bookmarked_connector)):
        try:
            connector = make(settings, credentials)
            answer = connector.test_connection()
            print(f"ok    {label:<10} {redact(f'{connector.describe()}: {answer}')}")
        except (ConnectorError, CredentialError, OSError, ValueError) as exc:
            failed += 1
            print(f"FAIL  {label:<10} {redact(str(exc))}")
    if not failed:
        failed += _test_same_customer(settings, credentials)
    if settings.hubspot_company_id:
        failed += _test_hubspot(settings, credentials)
    return 1 if failed else 0


def _test_same_customer(settings: CustomerSettings, credentials: CredentialResolver) -> int:
    """Read both rosters and check that they describe one customer (a `bookmarked.customer_id`
    copied from another district's file passes every connection test); 1 when they do not."""
    from reconciliation.connectors import ConnectorError, bookmarked_connector, source_connector
    from reconciliation.credentials import CredentialError, redact
    from reconciliation.hold import district_names, id_overlap, wrong_customer_reason

    try:
        source = source_connector(settings, credentials).fetch_roster()
        bookmarked = bookmarked_connector(settings, credentials).fetch_roster()
    except (ConnectorError, CredentialError, OSError, ValueError) as exc:
        print(f"FAIL  customer   reading both rosters: {redact(str(exc))}")
        return 1
    source_ids, bookmarked_ids = source.users["sis_id"], bookmarked.users["sis_id"]
    names = district_names(source, bookmarked)
    reason = wrong_customer_reason(
        source_ids, bookmarked_ids, settings.bookmarked_customer_id, names
    )
    if reason:
        print(f"FAIL  customer   {reason}")
        return 1
    found, total = id_overlap(source_ids, bookmarked_ids)
    share = f" ({found / total:.1%})" if total else ""
    print(
        f"ok    customer   {found} of {total} SIS user sourcedIds{share} are in Bookmarked "
        f"customer {settings.bookmarked_customer_id}"
    )
    return 0


def _test_hubspot(settings: CustomerSettings, credentials: CredentialResolver) -> int:
    """Read the customer's HubSpot company; 1 when that fails or names another customer."""
    from reconciliation.alerts.hubspot import (
        TOKEN_VARIABLE,
        HubSpotError,
        client_from_environment,
    )
    from reconciliation.credentials import CredentialError, redact

    company_id = settings.hubspot_company_id
    try:
        hubspot = client_from_environment(credentials)
        if hubspot is None:
            print(f"skip  hubspot    company {company_id}: {TOKEN_VARIABLE} is not set here")
            return 0
        company = hubspot.get_company(company_id)
    except (HubSpotError, CredentialError) as exc:
        print(f"FAIL  hubspot    {redact(str(exc))}")
        return 1
    owner = company.owner.name or company.owner.email or company.owner.id if company.owner else None
    described = f"company {company_id} {company.name!r}, owner {owner or 'none'}"
    expected = str(settings.bookmarked_customer_id)
    if company.bookmarked_customer_id != expected:
        print(
            f"FAIL  hubspot    {described}: its Bookmarked customer id is "
            f"{company.bookmarked_customer_id!r}, the settings say {expected!r}"
        )
        return 1
    print(f"ok    hubspot    {described}, Bookmarked customer {expected}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from reconciliation.demo import generate_demo

    out = Path(args.out).resolve()
    try:
        manifest = generate_demo(out, seed=args.seed, force=args.force)
    except FileExistsError as exc:
        print(f"ERROR {exc}")
        return 1
    print(f"demo data written to {out} (seed {args.seed})")
    for customer in manifest.customers.values():
        users = customer.source_counts.get("users", 0)
        expected = sum(customer.findings.values())
        print(
            f"  {customer.customer_id:<20} OneRoster {customer.oneroster_version}, {users} users, "
            f"{expected} planted discrepancies -> {customer.source_path}"
        )
    print(f"  Bookmarked (SQLite): {manifest.database}")
    print(f"  ground truth: {manifest.ground_truth}")
    return 0


def ensure_dagster_home() -> Path:
    """Use $DAGSTER_HOME, or the project's local instance folder (created on first use).

    A home that cannot hold the instance stops the command with one line naming the path
    and the cause (`SystemExit`: exit code 1, no traceback), before any run is started.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).expanduser().resolve()
    if home.exists() and not home.is_dir():
        raise SystemExit(f"ERROR DAGSTER_HOME={home} is a file, not a folder")
    blocking = next((p for p in home.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise SystemExit(f"ERROR DAGSTER_HOME={home}: {blocking} is a file, not a folder")
    try:
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "dagster.yaml").exists():
            (home / "dagster.yaml").write_text(DAGSTER_YAML)
    except OSError as exc:
        raise SystemExit(
            f"ERROR DAGSTER_HOME={home} cannot hold the Dagster instance: "
            f"{exc.strerror or exc} ({exc.filename or home})"
        ) from None
    if not os.access(home, os.W_OK | os.X_OK):
        raise SystemExit(f"ERROR DAGSTER_HOME={home} is not writable")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _runs_start_here(home: Path) -> bool:
    """Whether the instance's dagster.yaml keeps the DefaultRunLauncher, whose runs the scan
    forks from itself (`launch.forks_runs` decides for certain once Dagster is loaded;
    this reads the file before that import)."""
    import yaml

    try:
        config = yaml.safe_load((home / "dagster.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    launcher = config.get("run_launcher") if isinstance(config, dict) else None
    return launcher is None or (
        isinstance(launcher, dict) and launcher.get("class") == "DefaultRunLauncher"
    )


def cmd_scan(args: argparse.Namespace) -> int:
    folder = load_settings(_settings_dir(args.dir))
    for error in folder.errors:
        print(f"WARNING skipped: {error}")
    customers = args.customer or sorted(c for c, s in folder.customers.items() if s.enabled)
    unknown = [c for c in customers if c not in folder.customers]
    if unknown:
        print(
            f"ERROR unknown customer(s): {', '.join(unknown)} "
            f"(known: {', '.join(sorted(folder.customers)) or 'none'})"
        )
        return 1
    disabled = [folder.customers[c] for c in customers if not folder.customers[c].enabled]
    for settings in disabled:
        print(
            f"ERROR customer {settings.customer_id} is disabled ($.enabled is false in "
            f"{settings.path}): set it to true to scan it"
        )
    if disabled:
        return 1
    if not customers:
        print("no customers to scan")
        return 1
    if args.accept_hold and len(customers) != 1:
        print("ERROR --accept-hold accepts one customer's export: name it with --customer ID")
        return 1
    if args.dir:
        # the code location reads its partitions from the settings folder when it loads
        os.environ["RECONCILIATION_SETTINGS_DIR"] = str(Path(args.dir).resolve())
    home = ensure_dagster_home()
    if _runs_start_here(home):
        from reconciliation.rules.data_quality import start_spare

        start_spare()  # Great Expectations imports while this command imports Dagster
    from reconciliation.hold import ACCEPT_TAG
    from reconciliation.launch import allow_forked_runs
    from reconciliation.scan import scan_customers

    allow_forked_runs()
    started = time.monotonic()
    outcomes = scan_customers(
        customers,
        progress=lambda line: print(line, flush=True),
        tags={ACCEPT_TAG: "true"} if args.accept_hold else None,
    )
    print()
    print(format_summary(outcomes))
    print(
        f"\n{len(outcomes)} customer(s) in {time.monotonic() - started:.1f} s; "
        f"Dagster runs in {home} (open them with `make dev`)"
    )
    alerted = True
    if args.alert:
        from reconciliation.scan import alert_after_scan

        print()
        alerted = alert_after_scan(echo=lambda line: print(line, flush=True))
    # the command ends here: spare the exit's final garbage collection (0.5-0.8 s) the walk
    # over every object dagster made
    gc.freeze()
    return 1 if any(not o.succeeded and not o.held for o in outcomes) or not alerted else 0


def cmd_fleet(args: argparse.Namespace) -> int:
    """Every enabled customer's latest results, worst first (`reconciliation.fleet`)."""
    from reconciliation.fleet import (
        NEVER,
        fleet_table,
        fleet_totals,
        format_fleet,
        write_fleet_csv,
    )
    from reconciliation.paths import reports_dir
    from reconciliation.reports import report_write_error

    folder = load_settings(_settings_dir(args.dir), sources=False)
    unreadable = [e for e in folder.errors if Path(e.file) == folder.folder]
    if unreadable:
        print(f"ERROR {unreadable[0]}")
        return 1
    for error in folder.errors:
        print(f"WARNING left out: {error}")
    customers = sorted(c for c, s in folder.customers.items() if s.enabled)
    runs, source = _fleet_runs(customers)
    table = fleet_table(folder, reports_dir(), runs)
    print(format_fleet(table))
    totals = fleet_totals(table)
    print(
        f"\n{totals['customers']} customer(s): {totals['failed']} failed, {totals['held']} held, "
        f"{totals['stale']} stale, {totals[NEVER]} never scanned; {totals['findings']} findings "
        f"({totals['critical']} critical). Reports in {reports_dir()}; {source}"
    )
    if args.csv:
        path = Path(args.csv).expanduser().resolve()
        try:
            write_fleet_csv(table, path)
        except OSError as exc:
            print(f"ERROR {report_write_error(exc, path)}")
            return 1
        print(f"written to {path}")
    return 0


def _fleet_runs(customers: Sequence[str]) -> tuple[dict | None, str]:
    """Each customer's last finished run from the Dagster instance at $DAGSTER_HOME (or the
    project's), and where the statuses came from. A home with no instance yet is left alone
    (nothing is written): the statuses then come from the reports and holds only."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).expanduser().resolve()
    without = "failed runs are not shown (status from the reports and holds only)"
    if not ((home / "dagster.yaml").is_file() or (home / "history").is_dir()):
        return None, f"no Dagster instance at {home}: {without}"
    try:
        import dagster as dg

        from reconciliation.defs.fleet import last_runs

        with dg.DagsterInstance.from_config(str(home)) as instance:
            return last_runs(instance, customers), f"runs from the Dagster instance at {home}"
    except Exception as exc:  # the view still helps without the instance
        return None, f"cannot read the Dagster instance at {home} ({type(exc).__name__}): {without}"


def format_summary(outcomes: Sequence[ScanOutcome]) -> str:
    """One row per customer; a held or failed customer's last column says why."""
    header = (
        "customer",
        "run",
        "findings",
        "new",
        "persisting",
        "resolved",
        "in SIS",
        "in Bookmarked",
        "report",
    )
    rows = [header]
    for o in outcomes:
        rows.append(
            (
                o.customer_id,
                "ok" if o.succeeded else "held" if o.held else "FAILED",
                str(o.findings),
                str(o.new),
                str(o.persisting),
                str(o.resolved),
                str(o.issue_in_source),
                str(o.issue_in_bookmarked),
                o.report_folder or (o.error or ""),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reconcile", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    settings_help = "settings folder (default: $RECONCILIATION_SETTINGS_DIR or the project's)"

    settings = commands.add_parser("settings", help="customer settings files")
    settings_cmds = settings.add_subparsers(dest="action", required=True)
    validate = settings_cmds.add_parser("validate", help="validate every settings file")
    validate.add_argument("--dir", help=settings_help)
    validate.set_defaults(func=cmd_settings_validate)

    connections = commands.add_parser("connections", help="connections to SIS and Bookmarked")
    connection_cmds = connections.add_subparsers(dest="action", required=True)
    test = connection_cmds.add_parser(
        "test",
        help="open each configured connection, and check both sides describe one customer",
    )
    test.add_argument("--customer", required=True, metavar="ID", help="the customer's id")
    test.add_argument("--dir", help=settings_help)
    test.set_defaults(func=cmd_connections_test)

    demo = commands.add_parser("demo", help="generate the demo data")
    demo.add_argument(
        "--out",
        default=str(DEFAULT_DEMO_DIR),
        help="folder to write (default: demo/data/); refused when it holds other files",
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    demo.add_argument(
        "--force", action="store_true", help="write into --out even when it holds other files"
    )
    demo.set_defaults(func=cmd_demo)

    scan = commands.add_parser("scan", help="reconcile customers through Dagster")
    scan.add_argument(
        "--customer",
        action="extend",
        nargs="+",
        metavar="ID",
        help="customer id(s): --customer a b, or repeated (default: every enabled customer)",
    )
    scan.add_argument("--dir", help=settings_help)
    scan.add_argument(
        "--accept-hold",
        action="store_true",
        help="report this export even if it looks empty or cut (one --customer; for an "
        "export that is truly that small)",
    )
    scan.add_argument(
        "--alert",
        action="store_true",
        help="then evaluate and send alerts as the nightly_alerts sensor does (same policy "
        "and state), and print what was sent or why nothing",
    )
    scan.set_defaults(func=cmd_scan)

    fleet = commands.add_parser("fleet", help="every customer's latest results, worst first")
    fleet.add_argument("--dir", help=settings_help)
    fleet.add_argument("--csv", metavar="PATH", help="also write the table to this CSV file")
    fleet.set_defaults(func=cmd_fleet)

    from reconciliation.gateway.commands import add_commands as add_gateway_commands

    add_gateway_commands(commands)  # gateway, users, audit: the secured UI
    from reconciliation.diagnose_cli import add_commands as add_diagnose_commands

    add_diagnose_commands(commands)  # diagnose: one student or parent
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        # a run under way was asked to stop (`launch.ReconcileLocation.terminate`): it ends
        # CANCELED in its own time; the customers after it were not started
        print("\ninterrupted: the run under way was asked to stop", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
