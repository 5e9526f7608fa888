"""`reconcile`: the command line of the reconciliation project.

    reconcile settings validate [--dir DIR]        every error of every file; exit 1 if any
    reconcile connections test --customer ID       open each configured connection
    reconcile demo [--out DIR]                     build the demo data (OneRoster + SQLite)
    reconcile scan [--customer ID ...]             run the Dagster job per customer

`scan` runs the same job, assets and checks as the Dagster UI, through a Dagster instance
(`$DAGSTER_HOME`, default `.dagster_home/` in the project), so its runs show in `make dev`.
It exits 0 when findings exist: findings are the product, not a failure. It exits 1 only
when a customer's run fails, after running every other customer.
"""

from __future__ import annotations

import argparse
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

DEFAULT_DAGSTER_HOME = PROJECT_ROOT / ".dagster_home"
DEFAULT_DEMO_DIR = PROJECT_ROOT / "demo" / "data"
DAGSTER_YAML = """\
# Local Dagster instance for the embedded default (SQLite storage under this folder).
# Production uses deploy/dagster.postgres.yaml instead.
telemetry:
  enabled: false
"""


def _settings_dir(value: str | None) -> Path | None:
    return Path(value).resolve() if value else None


def cmd_settings_validate(args: argparse.Namespace) -> int:
    folder = load_settings(_settings_dir(args.dir), include_template=True)
    for error in folder.errors:
        print(f"ERROR {error}")
    print(
        f"{len(folder.customers)} valid file(s), {len(folder.errors)} error(s) in {folder.folder}"
    )
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
            print(f"ok    {label:<10} {connector.describe()}: {answer}")
        except (ConnectorError, CredentialError, OSError, ValueError) as exc:
            failed += 1
            print(f"FAIL  {label:<10} {redact(str(exc))}")
    if settings.hubspot_company_id:
        failed += _test_hubspot(settings, credentials)
    return 1 if failed else 0


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
    manifest = generate_demo(out, seed=args.seed)
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
    """Use $DAGSTER_HOME, or the project's local instance folder (created on first use)."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def cmd_scan(args: argparse.Namespace) -> int:
    from reconciliation.scan import scan_customers

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
    if not customers:
        print("no customers to scan")
        return 1
    if args.dir:
        # the code location reads its partitions from the settings folder when it loads
        os.environ["RECONCILIATION_SETTINGS_DIR"] = str(Path(args.dir).resolve())
    home = ensure_dagster_home()
    started = time.monotonic()
    outcomes = scan_customers(customers, progress=lambda line: print(line, flush=True))
    print()
    print(format_summary(outcomes))
    print(
        f"\n{len(outcomes)} customer(s) in {time.monotonic() - started:.1f} s; "
        f"Dagster runs in {home} (open them with `make dev`)"
    )
    return 1 if any(not o.succeeded for o in outcomes) else 0


def format_summary(outcomes: Sequence[object]) -> str:
    header = ("customer", "run", "findings", "new", "resolved", "in SIS", "in Bookmarked", "report")
    rows = [header]
    for o in outcomes:
        rows.append(
            (
                o.customer_id,
                "ok" if o.succeeded else "FAILED",
                str(o.findings),
                str(o.new),
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

    settings = commands.add_parser("settings", help="customer settings files")
    settings_cmds = settings.add_subparsers(dest="action", required=True)
    validate = settings_cmds.add_parser("validate", help="validate every settings file")
    validate.add_argument("--dir", help="settings folder (default: $RECONCILIATION_SETTINGS_DIR)")
    validate.set_defaults(func=cmd_settings_validate)

    connections = commands.add_parser("connections", help="connections to SIS and Bookmarked")
    connection_cmds = connections.add_subparsers(dest="action", required=True)
    test = connection_cmds.add_parser("test", help="open each configured connection")
    test.add_argument("--customer", required=True)
    test.add_argument("--dir", help="settings folder")
    test.set_defaults(func=cmd_connections_test)

    demo = commands.add_parser("demo", help="generate the demo data")
    demo.add_argument("--out", default=str(DEFAULT_DEMO_DIR))
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=cmd_demo)

    scan = commands.add_parser("scan", help="reconcile customers through Dagster")
    scan.add_argument(
        "--customer",
        action="extend",
        nargs="+",
        metavar="ID",
        help="customer id(s): --customer a b, or repeated (default: every enabled customer)",
    )
    scan.add_argument("--dir", help="settings folder")
    scan.set_defaults(func=cmd_scan)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
