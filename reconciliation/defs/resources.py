"""Resources: where settings and reports live, and the run's credential cache."""

from __future__ import annotations

import dagster as dg
from pydantic import Field, PrivateAttr

from reconciliation.audit import AuditLog
from reconciliation.credentials import CredentialResolver
from reconciliation.paths import reports_dir, settings_dir
from reconciliation.settings import CustomerSettings, SettingsFolder, load_settings
from reconciliation.storage import Location, location


class ReconciliationResource(dg.ConfigurableResource):
    """Customer settings, the report folder and one credential cache per run.

    Credentials are resolved only when a connector opens its connection, and cached here
    for the rest of the run (one Secrets Manager call per secret per run).
    """

    settings_dir: str = Field(
        default="",
        description="customer settings folder (default: RECONCILIATION_SETTINGS_DIR "
        "or customer-integration-settings/)",
    )
    reports_dir: str = Field(
        default="", description="report folder (default: RECONCILIATION_REPORTS_DIR or reports/)"
    )
    _credentials: CredentialResolver = PrivateAttr(default_factory=CredentialResolver)
    _settings: SettingsFolder | None = PrivateAttr(default=None)

    def customer(self, customer_id: str) -> CustomerSettings:
        """The customer's settings, fully validated; the folder is read once per run,
        not once per step."""
        if self._settings is None:
            folder = location(self.settings_dir) if self.settings_dir else settings_dir()
            self._settings = load_settings(folder)
        return self._settings.get(customer_id)

    def report_folder(self) -> Location:
        return location(self.reports_dir) if self.reports_dir else reports_dir()

    @property
    def credentials(self) -> CredentialResolver:
        return self._credentials

    @property
    def audit(self) -> AuditLog:
        return AuditLog.default()
