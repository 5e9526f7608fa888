"""`reconcile gateway`, `reconcile users ...` and `reconcile audit`: the secured UI's
command line, registered on the `reconcile` parser by `add_commands`."""

from __future__ import annotations

import argparse
import os
import sys

SECRET_ENV = "RECONCILIATION_GATEWAY_SECRET"


def cmd_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from reconciliation.credentials import CredentialError, CredentialResolver
    from reconciliation.gateway import store
    from reconciliation.gateway.app import GatewayConfig, create_app, settings_environments
    from reconciliation.gateway.oidc import OIDCConfig, OIDCConfigError

    try:
        oidc = OIDCConfig.from_environment()
        reference = os.environ.get(SECRET_ENV)
        key = CredentialResolver().resolve(reference).reveal() if reference else None
    except (OIDCConfigError, CredentialError) as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 1
    engine = store.engine()
    config = GatewayConfig(
        upstream=args.upstream,
        engine=engine,
        environments=settings_environments(),
        oidc=oidc,
    )
    if key:
        config.secret_key = key
    else:
        print(
            f"note: {SECRET_ENV} is not set: sessions are signed with a random key and end "
            "when the gateway restarts",
            file=sys.stderr,
        )
    print(
        f"gateway on http://{args.host}:{args.port} -> {args.upstream} "
        f"(sign-in: local accounts{', OpenID Connect' if oidc else ''}; "
        f"app database {store.sa.make_url(store.app_db_url()).render_as_string()})",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        log_level="warning",
        proxy_headers=False,
        ws="websockets-sansio",
    )
    return 0


def _read_password() -> str:
    """From standard input: the first line (a terminal prompts without echo)."""
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("password: ")
    return sys.stdin.readline().rstrip("\r\n")


def cmd_users(args: argparse.Namespace) -> int:
    from reconciliation.gateway import accounts, store

    engine = store.engine()
    try:
        if args.action == "add":
            password = None if args.oidc else _read_password()
            account = accounts.add_user(engine, args.name, args.role, password)
            kind = "OpenID Connect" if args.oidc else "local"
            print(f"added {account.name} ({account.role}, {kind})")
        elif args.action == "disable":
            accounts.disable(engine, args.name)
            print(f"disabled {args.name}: their sessions end at their next request")
        elif args.action == "set-role":
            accounts.set_role(engine, args.name, args.role)
            print(f"{args.name} is now {args.role}")
        else:
            for a in accounts.list_users(engine):
                state = "disabled" if a.disabled else "enabled"
                kind = "local" if a.has_password else "oidc"
                print(f"{a.name:<32} {a.role:<9} {kind:<6} {state}")
    except accounts.AccountError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from reconciliation.gateway import audit_trail, store

    try:
        since = audit_trail.parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 1
    rows = audit_trail.search(
        store.engine(), user=args.user, customer=args.customer, since=since, limit=args.limit
    )
    text = audit_trail.format_rows(rows)
    if text:
        print(text)
    print(f"{len(rows)} event(s)", file=sys.stderr)
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    from reconciliation.gateway import ROLES

    gateway = commands.add_parser(
        "gateway", help="the secured UI in front of the Dagster webserver"
    )
    gateway.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    gateway.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    gateway.add_argument(
        "--upstream",
        default="http://127.0.0.1:3000",
        help="the Dagster webserver (default http://127.0.0.1:3000)",
    )
    gateway.set_defaults(func=cmd_gateway)

    users = commands.add_parser("users", help="accounts of the secured UI")
    user_cmds = users.add_subparsers(dest="action", required=True)
    add = user_cmds.add_parser("add", help="add an account (password read from standard input)")
    add.add_argument("name", help="the account's user name")
    add.add_argument(
        "--role",
        required=True,
        choices=ROLES,
        help="viewer (read-only), engineer (staging launches, diagnoses) or admin",
    )
    add.add_argument(
        "--oidc", action="store_true", help="signs in with OpenID Connect only (no password)"
    )
    disable = user_cmds.add_parser("disable", help="disable an account (ends its sessions)")
    disable.add_argument("name", help="the account's user name")
    set_role = user_cmds.add_parser("set-role", help="change an account's role")
    set_role.add_argument("name", help="the account's user name")
    set_role.add_argument("--role", required=True, choices=ROLES, help="the new role")
    user_cmds.add_parser("list", help="every account")
    users.set_defaults(func=cmd_users)

    audit = commands.add_parser("audit", help="search the audit trail")
    audit.add_argument("--user", help="only this user (or run id, for Bookmarked reads)")
    audit.add_argument("--customer", help="only this customer")
    audit.add_argument("--since", help="from this time (2026-12-01, 2026-12-01T08:00) or 12h, 7d")
    audit.add_argument("--limit", type=int, help="at most this many events")
    audit.set_defaults(func=cmd_audit)
