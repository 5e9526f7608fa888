"""One partition per customer, from the settings folder.

Static partitions: the settings folder ships with the code location, so adding a customer
file and reloading the location adds the partition. Invalid files are left out here
(`reconcile settings validate` names every error) so one bad file never hides the others.
The connector-specific part of each `source` block is checked when the customer's run
starts (a clear failure on that partition), which keeps loading the location fast.
"""

from __future__ import annotations

import dagster as dg

from reconciliation.settings import load_settings

customer_partitions = dg.StaticPartitionsDefinition(
    sorted(c.customer_id for c in load_settings(sources=False).customers.values() if c.enabled)
)
