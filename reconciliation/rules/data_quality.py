"""Data-quality checks on the SOURCE roster, with Great Expectations 1.x.

These look at the SIS export on its own (no comparison with Bookmarked): required
fields present, sourcedIds unique, emails well formed, roles and grades from the
OneRoster / CEDS vocabularies. Each check becomes one asset check at the Dagster edge,
so `check_source_quality` returns plain results, not GX objects.

Results carry counts and a few record ids (sourcedIds, or `row N` when the id itself
is missing), never names or emails: they may be shown in the Dagster UI and logs.

Great Expectations takes seconds to import (3-5 s of CPU, with compiled bytecode), so it
is imported inside the function, with an ephemeral context (nothing written to disk) and
its progress bars off. A run imports it in a process of its own (`QualityProcess`),
started when the run's first step starts: the import then runs on the other core while
the run reads both systems, and the run worker never holds GX's pandas copies.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from reconciliation.vocabulary import CEDS_GRADES

if TYPE_CHECKING:  # the check list is read when the Dagster definitions load: keep it light
    import polars as pl

    from reconciliation.roster import Roster

#: the characters Python's `\s` matches, written out: pandas runs a pattern with `\s` or
#: `\S` through Python's re value by value (1 s per million), one without them through
#: pyarrow's RE2 at once (0.15 s); the matches are the same (tested)
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: OneRoster 1.1 roles, 1.2 additions, and 1.2 extensions (`ext:...`); case-insensitive
#: because exporters write `Student` and the sync lowercases anyway
ROLE_PATTERN = (
    r"(?i)^(?:administrator|aide|guardian|parent|proctor|relative|student|teacher|counselor"
    rf"|districtAdministrator|principal|siteAdministrator|systemAdministrator|ext:[^{WHITESPACE}]+)$"
)
EMAIL_PATTERN = rf"^[^@{WHITESPACE}]+@[^@{WHITESPACE}.]+(?:\.[^@{WHITESPACE}.]+)+$"
#: how many offending record ids a result carries
SAMPLE_SIZE = 5
#: rows per validation of a big table's row-by-row checks (`_parts`): Great Expectations'
#: pandas engine holds several copies of what it validates (3.3 GiB for the 340 MB of
#: checked columns of a million students, validated a table at a time)
CHUNK_ROWS = 500_000

Kind = Literal["not_null", "unique", "matches", "in_set"]


@dataclass(frozen=True)
class QualityCheck:
    """One expectation on one column of one source table."""

    name: str
    table: str
    column: str
    kind: Kind
    description: str
    value: Any = None  # the regex for `matches`, the allowed values for `in_set`


@dataclass(frozen=True)
class QualityResult:
    """The outcome of one check, in plain values (no names or emails)."""

    name: str
    table: str
    column: str
    description: str
    passed: bool
    checked: int
    unexpected_count: int
    unexpected_ids: tuple[str, ...]


_SINGULAR = {"schools": "school", "users": "user", "classes": "class", "enrollments": "enrollment"}


def _required(table: str, column: str, field: str) -> QualityCheck:
    return QualityCheck(
        f"{table}_{column}_present",
        table,
        column,
        "not_null",
        f"every {_SINGULAR[table]} has its required `{field}`",
    )


def _unique(table: str) -> QualityCheck:
    return QualityCheck(
        f"{table}_sis_id_unique", table, "sis_id", "unique", f"{table} sourcedIds are unique"
    )


CHECKS: tuple[QualityCheck, ...] = (
    _required("schools", "sis_id", "sourcedId"),
    _unique("schools"),
    _required("schools", "name", "name"),
    _required("users", "sis_id", "sourcedId"),
    _unique("users"),
    _required("users", "role_raw", "role"),
    _required("users", "username", "username"),
    _required("users", "first_name", "givenName"),
    _required("users", "last_name", "familyName"),
    QualityCheck(
        "users_email_format",
        "users",
        "email_normalized",
        "matches",
        "emails, where given, have a local part, a domain and a top-level domain",
        EMAIL_PATTERN,
    ),
    QualityCheck(
        "users_role_vocabulary",
        "users",
        "role_raw",
        "matches",
        "roles are OneRoster role tokens (or ext: extensions)",
        ROLE_PATTERN,
    ),
    QualityCheck(
        "users_grade_vocabulary",
        "users",
        "grade",
        "in_set",
        "grades, where given, normalize to a CEDS grade code",
        tuple(sorted(CEDS_GRADES)),
    ),
    _required("classes", "sis_id", "sourcedId"),
    _unique("classes"),
    _required("classes", "name", "title"),
    _required("classes", "school_sis_id", "schoolSourcedId"),
    _required("classes", "term_sis_id", "termSourcedIds"),
    _required("enrollments", "sis_id", "sourcedId"),
    _unique("enrollments"),
    _required("enrollments", "class_sis_id", "classSourcedId"),
    _required("enrollments", "user_sis_id", "userSourcedId"),
    _required("enrollments", "role", "role"),
    QualityCheck(
        "enrollments_role_vocabulary",
        "enrollments",
        "role",
        "matches",
        "enrollment roles are OneRoster role tokens",
        ROLE_PATTERN,
    ),
)


def _frame_for(roster: Roster, table: str, columns: Iterable[str]) -> pl.DataFrame:
    """The checked columns plus `record`: the sourcedId, or `row N` when it is missing."""
    import polars as pl

    from reconciliation.roster import normalized_email

    frame = roster.table(table)
    if table == "users":
        frame = frame.with_columns(pl.coalesce("email_normalized", normalized_email()))
    record = pl.coalesce(
        "sis_id", pl.format("row {}", pl.int_range(1, pl.len() + 1, dtype=pl.Int64))
    ).alias("record")
    return frame.select(record, *sorted(set(columns)))


def _expectation(check: QualityCheck) -> Any:
    import great_expectations.expectations as gxe

    meta = {"check": check.name}
    if check.kind == "not_null":
        return gxe.ExpectColumnValuesToNotBeNull(column=check.column, meta=meta)
    if check.kind == "unique":
        return gxe.ExpectColumnValuesToBeUnique(column=check.column, meta=meta)
    if check.kind == "matches":
        return gxe.ExpectColumnValuesToMatchRegex(column=check.column, regex=check.value, meta=meta)
    return gxe.ExpectColumnValuesToBeInSet(
        column=check.column, value_set=list(check.value), meta=meta
    )


def check_frames(
    roster: Roster, checks: Iterable[QualityCheck] = CHECKS
) -> dict[str, pl.DataFrame]:
    """Per checked table, only the columns its checks read, plus `record`."""
    checks = list(checks)
    return {
        table: _frame_for(roster, table, (c.column for c in checks if c.table == table))
        for table in dict.fromkeys(check.table for check in checks)
    }


def check_source_quality(
    roster: Roster, checks: Iterable[QualityCheck] = CHECKS
) -> list[QualityResult]:
    """Run the checks on a source roster; one result per check, in the order given."""
    checks = list(checks)
    return validate_frames(check_frames(roster, checks), checks)


def _parts(
    frame: pl.DataFrame, checks: list[QualityCheck]
) -> Iterator[tuple[pl.DataFrame, list[QualityCheck]]]:
    """What to validate at once: the whole table when it has at most CHUNK_ROWS rows; else
    the row-by-row checks a CHUNK_ROWS slice at a time, and each uniqueness check on its
    column alone (it needs every row)."""
    if frame.height <= CHUNK_ROWS:
        yield frame, checks
        return
    row_checks = [check for check in checks if check.kind != "unique"]
    if row_checks:
        for start in range(0, frame.height, CHUNK_ROWS):
            yield frame.slice(start, CHUNK_ROWS), row_checks
    for check in checks:
        if check.kind == "unique":
            yield frame.select("record", check.column), [check]


def validate_frames(
    frames: dict[str, pl.DataFrame], checks: Iterable[QualityCheck] = CHECKS
) -> list[QualityResult]:
    """Run the checks on the frames of `check_frames`: one ephemeral GX context, one
    pandas asset whose batch definition takes each part (`_parts`) in turn, one validation
    of each part's expectations with SUMMARY results, added up per check. The parts
    give the results of one validation of the whole table: counts add up, and the
    samples are the first unexpected rows in order."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints every pandas batch under this size with an md5 of all its cells, a
    # batch marker nothing here reads: over half of the validation at 200k students
    pandas_execution_engine.HASH_THRESHOLD = 0
    checks = list(checks)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batches = (
        context.data_sources.add_pandas("source_roster")
        .add_dataframe_asset("source_table")
        .add_batch_definition_whole_dataframe("source_table")
    )
    passed = {check.name: True for check in checks}
    checked = dict.fromkeys(passed, 0)
    unexpected = dict.fromkeys(passed, 0)
    samples: dict[str, list[str]] = {name: [] for name in passed}
    for table, frame in frames.items():
        table_checks = [check for check in checks if check.table == table]
        for part, part_checks in _parts(frame, table_checks):
            batch = batches.get_batch(batch_parameters={"dataframe": part.to_pandas()})
            suite = gx.ExpectationSuite(
                name=f"source_{table}", expectations=[_expectation(c) for c in part_checks]
            )
            validation = batch.validate(
                suite,
                result_format={
                    "result_format": "SUMMARY",
                    "unexpected_index_column_names": ["record"],
                    "partial_unexpected_count": SAMPLE_SIZE,
                },
            )
            for outcome in validation.results:
                name = outcome.expectation_config.meta["check"]
                found = outcome.result
                passed[name] = passed[name] and bool(outcome.success)
                checked[name] += int(found.get("element_count", 0))
                unexpected[name] += int(found.get("unexpected_count", 0))
                sample = found.get("partial_unexpected_index_list") or []
                # only the record id leaves this function: the unexpected values may be emails
                samples[name] += [str(item["record"]) for item in sample]
            del batch, validation  # one part's pandas copy at a time

    return [
        QualityResult(
            name=check.name,
            table=check.table,
            column=check.column,
            description=check.description,
            passed=passed[check.name],
            checked=checked[check.name],
            unexpected_count=unexpected[check.name],
            # the first unexpected rows of the table, then each record once
            unexpected_ids=tuple(dict.fromkeys(samples[check.name][:SAMPLE_SIZE])),
        )
        for check in checks
    ]


# -- Great Expectations in a process of its own -------------------------------------------

_LENGTH = struct.Struct(">Q")


class QualityProcessError(Exception):
    """The data-quality process could not run the checks (it died, or could not start)."""


class QualityProcess:
    """A `python -m reconciliation.rules.data_quality` child that imports Great Expectations
    as soon as it starts, then validates the frames it is sent.

    The frames (only the checked columns) travel as Arrow IPC over its stdin, never
    through a file; the results come back as one JSON line. A process that is not used
    ends when its stdin closes (`close`, or the run worker's exit)."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def validate(
        self, frames: dict[str, pl.DataFrame], checks: Iterable[QualityCheck] = CHECKS
    ) -> list[QualityResult]:
        """The results of `validate_frames(frames, checks)`, computed in the child."""
        self.send(frames, checks)
        return self.results()

    def send(
        self, frames: dict[str, pl.DataFrame], checks: Iterable[QualityCheck] = CHECKS
    ) -> None:
        """Hand the child its frames and go on: it validates them (once Great Expectations
        has imported) while this process does other work; `results` collects them."""
        stdin = self._process.stdin
        assert stdin is not None
        try:
            header = {"tables": list(frames), "checks": [check.name for check in checks]}
            stdin.write(json.dumps(header).encode() + b"\n")
            for frame in frames.values():
                _send(stdin, frame)
            stdin.close()
        except OSError as exc:
            self.close()
            raise QualityProcessError(f"the data-quality process stopped: {exc}") from None

    def results(self) -> list[QualityResult]:
        """Wait for the results of the frames `send` handed over."""
        stdout = self._process.stdout
        assert stdout is not None
        try:
            reply = stdout.readline()
        except OSError as exc:
            self.close()
            raise QualityProcessError(f"the data-quality process stopped: {exc}") from None
        code = self._process.wait()
        if code != 0 or not reply:
            raise QualityProcessError(f"the data-quality process failed (exit code {code})")
        return [
            QualityResult(**{**item, "unexpected_ids": tuple(item["unexpected_ids"])})
            for item in json.loads(reply)
        ]

    def close(self) -> None:
        """Stop the child (a run that will not validate)."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()

    def hand_over(self) -> None:
        """Close this process's ends of the pipes once a forked run worker holds its own
        copies: the worker talks to the child, this process only reaps it (`reap`)."""
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                stream.close()

    def reap(self, timeout: float = 5.0) -> None:
        """After the worker it was handed to has ended: wait for the child, which ends
        when the worker's pipe ends close, and kill it if it lingers."""
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()


#: the process `start_spare` started for the next run this process launches
_spare: QualityProcess | None = None


def start_spare() -> None:
    """Start a data-quality process now for the next run this command forks (`take_spare`):
    before the command imports Dagster, and while a run goes on when another follows.
    Great Expectations' import, the longest part of a small customer's run, then overlaps
    other work. Killed at exit if no run took it."""
    global _spare
    if _spare is None:
        _spare = QualityProcess()


def take_spare() -> QualityProcess | None:
    """The process `start_spare` started, once; None when there is none (left)."""
    global _spare
    spare, _spare = _spare, None
    return spare


@atexit.register
def _drop_spare() -> None:
    spare = take_spare()
    if spare is not None:
        spare.close()


def _send(stream: BinaryIO, frame: pl.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.write_ipc(buffer)
    stream.write(_LENGTH.pack(buffer.tell()))
    stream.write(buffer.getbuffer())


def _receive(stream: BinaryIO) -> bytes:
    (size,) = _LENGTH.unpack(stream.read(_LENGTH.size))
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the frames were cut off")
    return data


def _serve() -> int:
    """The child: read the request while Great Expectations imports, validate, reply."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    request: dict[str, Any] = {}

    def read() -> None:
        line = stdin.readline()
        if line:  # nothing: the parent did not need the checks
            header = json.loads(line)
            request.update(header, data=[_receive(stdin) for _ in header["tables"]])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    import great_expectations  # noqa: F401  (the seconds this process exists to spend early)
    import polars as pl

    reader.join()
    if not request:
        return 0
    frames = {}
    for table in request["tables"]:
        frames[table] = pl.read_ipc(io.BytesIO(request["data"].pop(0)))  # bytes freed
    by_name = {check.name: check for check in CHECKS}
    results = validate_frames(frames, [by_name[name] for name in request["checks"]])
    stdout.write(json.dumps([asdict(result) for result in results]).encode() + b"\n")
    stdout.flush()
    return 0


if __name__ == "__main__":
    # no interpreter teardown: its final collection would walk every GX object (1-2 s)
    code = _serve()
    sys.stdout.flush()
    os._exit(code)
