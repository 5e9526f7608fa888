"""The secured UI: a gateway of ours in front of the Dagster webserver (which has no login).

| module | concern |
|---|---|
| `store.py` | the application database (`RECONCILIATION_APP_DB`): accounts, sessions, audit |
| `accounts.py` | local accounts (bcrypt) and the role of every user, OIDC ones too |
| `audit_trail.py` | the append-only audit trail: sign-ins, launches, downloads, Bookmarked reads |
| `policy.py` | pure: what a GraphQL document does, for which customer, who may; report reads |
| `sessions.py` | signed session cookies, idle / absolute / step-up limits, login rate limit |
| `oidc.py` | OpenID Connect sign-in with authlib |
| `report_files.py` | report downloads: the names allowed, the UI's links, the file in storage |
| `proxy.py` | HTTP and WebSocket forwarding to the webserver |
| `app.py` | the Starlette application that ties them together |
| `commands.py` | `reconcile gateway`, `reconcile users ...`, `reconcile audit` |
"""

#: the roles, least to most (policy.py says what each may do)
ROLES = ("viewer", "engineer", "admin")
