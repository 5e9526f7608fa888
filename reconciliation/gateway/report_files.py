"""Report downloads through the gateway: which names a request may ask for, the link the
Dagster UI shows, and where the file is in the reports storage.

Reports hold student data, so they are served only through the gateway (signed in, the
role checked by `policy.may_read_report`, every attempt audited), never by a path a
request could bend: the customer is a settings slug, the run a run stamp or `latest`, the
file one of `REPORT_FILES`. A name that is anything else is refused before any storage is
touched, so `..`, encoded slashes or another customer's folder cannot be reached.
No Starlette here (the run workers import `report_url`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

from reconciliation.storage import Location, open_chunks

#: where the UI's report links point: the gateway's public base URL (e.g.
#: https://reconcile.example.org); unset, the UI shows the folder (or S3's presigned links)
GATEWAY_URL_ENV = "RECONCILIATION_GATEWAY_URL"
LATEST = "latest"  # reconciliation.reports.LATEST
#: the customer slug of the settings (reconciliation.settings.SLUG_PATTERN)
CUSTOMER = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: a run folder as reconciliation.reports.run_stamp names it
RUN = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")
#: the files of a run folder (reconciliation.reports.write_report) and their media types
REPORT_FILES = {
    "mismatches.csv": "text/csv; charset=utf-8",
    "mismatches.parquet": "application/vnd.apache.parquet",
    "district_issues.csv": "text/csv; charset=utf-8",
    "resolved.csv": "text/csv; charset=utf-8",
    "summary.json": "application/json",
}
#: the files the UI links to on each mismatch_report materialization
LINKED_FILES = ("mismatches.csv", "district_issues.csv", "resolved.csv")


class ReportNameError(ValueError):
    """A download request naming something that is not a report file."""


@dataclass(frozen=True)
class ReportFile:
    customer: str
    run: str  # a run stamp, or 'latest'
    file: str

    @property
    def media_type(self) -> str:
        return REPORT_FILES[self.file]

    @property
    def download_name(self) -> str:
        """The name the browser saves it as (the parts are checked names: header-safe)."""
        return f"{self.customer}_{self.run}_{self.file}"

    def location(self, reports: Location) -> Location:
        return reports / self.customer / self.run / self.file

    def __str__(self) -> str:
        return f"{self.customer}/{self.run}/{self.file}"


def report_file(customer: str, run: str, file: str) -> ReportFile:
    """The requested file, or ReportNameError saying which part is not allowed."""
    if not CUSTOMER.match(customer):
        raise ReportNameError("the customer is not a customer id")
    if run != LATEST and not RUN.match(run):
        raise ReportNameError("the run is not a run folder name (or 'latest')")
    if file not in REPORT_FILES:
        raise ReportNameError(f"the file is not a report file ({', '.join(REPORT_FILES)})")
    return ReportFile(customer, run, file)


def report_url(base: str, customer: str, run: str, file: str) -> str:
    """The gateway link of one report file (checked: a bad name raises ReportNameError)."""
    wanted = report_file(customer, run, file)
    parts = "/".join(quote(p, safe="") for p in (wanted.customer, wanted.run, wanted.file))
    return f"{base.rstrip('/')}/reports/{parts}"


def open_report(wanted: ReportFile, reports: Location) -> tuple[int, Iterator[bytes]]:
    """Its size and bytes in chunks; FileNotFoundError (or another OSError) when absent."""
    return open_chunks(wanted.location(reports))


def latest_run(customer: str, reports: Location) -> str | None:
    """Which run `latest/` is a copy of (its summary.json's `run`), for the audit row;
    None when it cannot be read."""
    import json

    try:
        summary = json.loads((reports / customer / LATEST / "summary.json").read_bytes())
    except (OSError, ValueError):
        return None
    run = summary.get("run") if isinstance(summary, dict) else None
    return run if isinstance(run, str) and RUN.match(run) else None
