"""One partition per customer, from the settings folder.

Static partitions: the settings folder ships with the code location, so adding a customer
file and reloading the location adds the partition. Invalid files are left out here
(`reconcile settings validate` names every error) so one bad file never hides the others:
`load_settings` never raises, whatever a file holds, and a valid customer_id is always a
valid partition key (a slug, matched whole). The connector-specific part of each `source`
block is checked when the customer's run starts (a clear failure on that partition), which
keeps loading the location fast.
"""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg

from reconciliation.settings import load_settings

_settings = load_settings(sources=False)

customer_partitions = dg.StaticPartitionsDefinition(
    sorted(c.customer_id for c in _settings.customers.values() if c.enabled)
)

if _settings.errors:
    # file names only: the messages are for `reconcile settings validate`
    logging.getLogger(__name__).warning(
        "settings left out of the customer partitions (run `reconcile settings validate`): %s",
        ", ".join(sorted({Path(error.file).name for error in _settings.errors})),
    )
