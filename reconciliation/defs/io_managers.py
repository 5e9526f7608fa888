"""Stores each customer's canonical roster as one Parquet file per table.

Parquet rather than pickles: readable by any tool during an investigation, typed, and
compact for millions of enrollments. Files live under `$RECONCILIATION_STORAGE_DIR`
(default `storage/`; an `s3://` URL in production, see `reconciliation/storage.py`) and
hold student data: keep that folder as protected as the reports.
polars is imported when a roster is stored or loaded, not when the definitions load.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import dagster as dg

from reconciliation import storage
from reconciliation.credentials import redact
from reconciliation.paths import storage_dir
from reconciliation.storage import Location

if TYPE_CHECKING:
    from reconciliation.roster import Roster


class RosterIOManager(dg.ConfigurableIOManager):
    base_dir: str = ""

    def _folder(self, asset_key: dg.AssetKey, partition: str) -> Location:
        base = storage.location(self.base_dir) if self.base_dir else storage_dir() / "rosters"
        return base.joinpath(*asset_key.path, partition)

    def handle_output(self, context: dg.OutputContext, obj: Roster) -> None:
        from reconciliation.roster import ALL_TABLES

        folder = self._folder(context.asset_key, context.asset_partition_key)
        folder.mkdir(parents=True, exist_ok=True)
        for table in ALL_TABLES:
            storage.write_parquet(obj.table(table), folder / f"{table}.parquet")
        header = {"customer_id": obj.customer_id, "side": obj.side, "meta": obj.meta}
        # the provenance names URLs: stored with their passwords and secret values masked
        text = json.dumps(header, default=str, indent=2)
        (folder / "roster.json").write_text(redact(text))

    def load_input(self, context: dg.InputContext) -> Roster:
        return self.load_roster(context.asset_key, context.asset_partition_key)

    def load_roster(self, asset_key: dg.AssetKey, partition: str) -> Roster:
        """The roster stored for `asset_key` and the customer `partition`."""
        from reconciliation.roster import ALL_TABLES, TABLES, Roster

        folder = self._folder(asset_key, partition)
        header = json.loads((folder / "roster.json").read_text())
        # a roster stored before the reference tables (orgs) existed loads without them
        tables = {
            table: storage.read_parquet(folder / f"{table}.parquet")
            for table in ALL_TABLES
            if table in TABLES or (folder / f"{table}.parquet").exists()
        }
        return Roster(header["customer_id"], header["side"], meta=header["meta"], **tables)
