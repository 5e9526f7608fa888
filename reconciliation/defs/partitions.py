"""One partition per customer, kept in step with the settings folder.

Dynamic partitions (`customers`), stored in the Dagster instance: a customer file added to
the settings folder becomes a partition without a code change, redeploy or location
reload, and a removed or disabled customer's partition is retired (its past runs and
materializations stay in the instance). Who adds and retires them:

- the `customer_partitions` sensor (`defs/sensors.py`), every minute while the daemon runs;
- `reconcile scan`, which adds the partitions of the customers it runs before launching
  (it works without the daemon), and retires nothing.

Reading the folder here uses `load_settings(sources=False)`, which never raises and skips
the connector checks: a valid customer_id is always a valid partition key, and one broken
file leaves only its customer out. Nothing is read when the code location loads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import dagster as dg

if TYPE_CHECKING:
    from reconciliation.settings import CustomerSettings, SettingsFolder

PARTITIONS_NAME = "customers"
#: the run tag the run queue limits per SIS host (`tag_concurrency_limits` in dagster.yaml)
SOURCE_HOST_TAG = "reconciliation/source_host"
#: the source host of a customer whose SIS export is a local file or folder
LOCAL_FILES = "local-files"

customer_partitions = dg.DynamicPartitionsDefinition(name=PARTITIONS_NAME)


def read_settings(folder: Path | None = None) -> SettingsFolder:
    """The settings folder, quickly (no connector checks); never raises."""
    from reconciliation.settings import load_settings

    return load_settings(folder, sources=False)


def enabled_customers(settings: SettingsFolder) -> list[str]:
    """The customers a nightly scan runs: valid files, not `enabled: false`."""
    return sorted(c for c, s in settings.customers.items() if s.enabled)


@dataclass(frozen=True)
class PartitionChanges:
    """What to add to and retire from the instance's partitions to match the settings."""

    add: tuple[str, ...]
    retire: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.add or self.retire)

    def requests(self) -> list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest]:
        """As a sensor returns them (`SensorResult(dynamic_partitions_requests=...)`)."""
        requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
        if self.add:
            requests.append(dg.AddDynamicPartitionsRequest(PARTITIONS_NAME, list(self.add)))
        if self.retire:
            requests.append(dg.DeleteDynamicPartitionsRequest(PARTITIONS_NAME, list(self.retire)))
        return requests


def partition_changes(wanted: Iterable[str], existing: Iterable[str]) -> PartitionChanges:
    """Pure: the partitions to add (wanted, missing) and retire (present, not wanted)."""
    wanted, existing = set(wanted), set(existing)
    return PartitionChanges(tuple(sorted(wanted - existing)), tuple(sorted(existing - wanted)))


def existing_partitions(instance: dg.DagsterInstance) -> list[str]:
    return list(instance.get_dynamic_partitions(PARTITIONS_NAME))


def add_partitions(instance: dg.DagsterInstance, customers: Iterable[str]) -> list[str]:
    """Add the customers' partitions that are missing (`reconcile scan`); returns them."""
    missing = partition_changes(customers, existing_partitions(instance)).add
    if missing:
        instance.add_dynamic_partitions(PARTITIONS_NAME, list(missing))
    return list(missing)


def source_host(settings: CustomerSettings) -> str:
    """The host a customer's SIS export is read from, for the run queue's per-host limit:
    a hostname only (never a user, password, path or query), or `local-files`."""
    source = settings.source
    for key in ("base_url", "location"):
        value = source.get(key)
        if isinstance(value, str) and "://" in value:
            host = urlsplit(value).hostname
            if host:
                return host.lower()
    if settings.source_type == "classlink":
        if source.get("mode") == "oneroster_proxy":
            return "oneroster-proxy.classlink.io"
        return "rosterserver.com"
    return LOCAL_FILES


def run_tags(settings: CustomerSettings) -> dict[str, str]:
    """The tags every run of the customer carries (the schedule's and `reconcile scan`'s)."""
    return {SOURCE_HOST_TAG: source_host(settings)}
