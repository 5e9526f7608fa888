"""Where things live on disk, each folder overridable by one environment variable.

| variable | default | holds |
|---|---|---|
| RECONCILIATION_SETTINGS_DIR | customer-integration-settings/ | one JSON file per customer |
| RECONCILIATION_REPORTS_DIR | reports/ | mismatch reports (student data) |
| RECONCILIATION_STORAGE_DIR | storage/ | stored rosters (student data), the audit log |

Defaults are relative to the project checkout, so the embedded default works from any
working directory. Each may also be an `s3://bucket/prefix` URL (production): the folder is
then an `S3Path` (`reconciliation/storage.py`), read and written by the same code.
"""

from __future__ import annotations

import os
from pathlib import Path

from reconciliation.storage import Location, location

PROJECT_ROOT = Path(__file__).resolve().parents[1]

SETTINGS_DIR_ENV = "RECONCILIATION_SETTINGS_DIR"
REPORTS_DIR_ENV = "RECONCILIATION_REPORTS_DIR"
STORAGE_DIR_ENV = "RECONCILIATION_STORAGE_DIR"

DEFAULT_SETTINGS_DIR = PROJECT_ROOT / "customer-integration-settings"


def _configured(variable: str, default: Path) -> Location:
    value = os.environ.get(variable)
    return location(value) if value else default


def settings_dir() -> Location:
    return _configured(SETTINGS_DIR_ENV, DEFAULT_SETTINGS_DIR)


def reports_dir() -> Location:
    return _configured(REPORTS_DIR_ENV, PROJECT_ROOT / "reports")


def storage_dir() -> Location:
    return _configured(STORAGE_DIR_ENV, PROJECT_ROOT / "storage")
