"""Customer integration settings: one JSON file per customer, validated by JSON Schema.

Every error names the file and the JSON path (`$.source.type`), so a support engineer can
fix a file without reading code. The `source` block is validated by the schema of its
`type`, which each source connector declares next to its code: adding a connector adds
its settings without touching this module.

Credentials in settings are references (`env:NAME`, `aws-secretsmanager:ID#key`), resolved
only when a connection opens (see `credentials.py`). A URL that embeds a password is refused
wherever it appears, and no message repeats a value that could be a secret.

A folder holds one `*.json` file per customer (any case of the extension; by convention
`<customer_id>.json`) plus `template.json`, which is validated but never a customer. Two
files with one customer_id, or with one Bookmarked customer in one environment, are both
refused. Other files (`*.md`, `*.bak`, ...) and hidden ones (`.#x.json` of an editor) are
ignored.

One bad file never stops the others: whatever a file holds (a list, bytes that are not
UTF-8, a folder or a pipe named `x.json`, `NaN`, nesting a thousand deep), it becomes
errors for that file and the other customers load, because the Dagster code location
lists the customers at load time and one exception there would hide every customer.
"""

from __future__ import annotations

import json
import re
import stat
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema

from reconciliation.alerts.config import CUSTOMER_ALERTS_SCHEMA
from reconciliation.credentials import (
    REFERENCE_PATTERN,
    redact,
    secret_query_keys,
    url_has_literal_password,
    urls_in,
)

# re-exported: callers find the settings folder here
from reconciliation.paths import DEFAULT_SETTINGS_DIR as DEFAULT_SETTINGS_DIR
from reconciliation.paths import PROJECT_ROOT as PROJECT_ROOT
from reconciliation.paths import settings_dir
from reconciliation.rules import RULE_IDS
from reconciliation.storage import is_s3

TEMPLATE_NAME = "template.json"
#: a settings file is a few kilobytes; a bigger one is a mistake (and slows every load)
MAX_FILE_BYTES = 1_000_000
#: errors listed per schema check of one file (the rest would drown them)
MAX_SCHEMA_ERRORS = 100
#: the tables whose missing share can hold a run (`hold.max_missing_share`)
HOLD_TABLES = ("users", "enrollments", "links")
DEFAULT_MAX_MISSING_SHARE = 0.3

#: a credential field must hold a reference, never the secret itself
CREDENTIAL_REF = {
    "type": "string",
    "pattern": REFERENCE_PATTERN,
    "description": "env:NAME, aws-secretsmanager:SECRET_ID or ...:SECRET_ID#json_key",
}
#: a field that is a credential reference or a plain value that is no secret (a URL
#: without a password, a user name)
REF_OR_VALUE = {"type": "string", "minLength": 1}
#: an API's URL: credentials and student data travel over it, so https; plain http only
#: to this machine (a local proxy or tunnel, the tests' servers)
SECURE_URL_PATTERN = r"^(https://|http://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?(/|$))[^@\s]*$"
SECURE_URL = {"type": "string", "pattern": SECURE_URL_PATTERN}
#: a customer id: safe as a Dagster partition key, a folder name and a file name
SLUG_PATTERN = "^[a-z0-9][a-z0-9-]{0,62}$"

SHARE = {"type": "number", "minimum": 0, "maximum": 1}

HOLD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "When a run is held instead of reported: an export that lacks too much of "
    "what Bookmarked holds is more likely broken than the district's real roster.",
    "additionalProperties": False,
    "properties": {
        "max_missing_share": {
            # a number for all three tables, or an object overriding some of them; numeric
            # keywords apply only to a number, object keywords only to an object
            "type": ["number", "object"],
            "minimum": 0,
            "maximum": 1,
            "additionalProperties": False,
            "properties": {table: SHARE for table in HOLD_TABLES},
            "description": f"default {DEFAULT_MAX_MISSING_SHARE} for each of "
            + ", ".join(HOLD_TABLES),
        },
        "accept_once": {
            "type": "string",
            "minLength": 1,
            "description": "the fingerprint a held run prints: accepts exactly that export once",
        },
    },
}

BOOKMARKED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "How to read this customer's rows in Bookmarked (read-only).",
    "required": ["customer_id"],
    "additionalProperties": False,
    "properties": {
        "customer_id": {
            "type": "integer",
            "minimum": 1,
            "description": "customers.id in Bookmarked",
        },
        "type": {"enum": ["database", "api"], "default": "database"},
        "database_url": {
            **REF_OR_VALUE,
            "description": "SQLAlchemy URL or a credential reference to one",
        },
        "base_url": SECURE_URL,
        "client_id": REF_OR_VALUE,
        "client_secret": CREDENTIAL_REF,
        "scope": {"type": "string", "default": "roster.read"},
    },
    "allOf": [
        {
            "if": {"properties": {"type": {"const": "api"}}, "required": ["type"]},
            "then": {"required": ["base_url", "client_id", "client_secret"]},
            "else": {"required": ["database_url"]},
        }
    ],
}

SETTINGS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Bookmarked reconciliation: customer integration settings",
    "type": "object",
    "required": ["customer_id", "name", "environment", "bookmarked", "source"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "customer_id": {
            "type": "string",
            "pattern": SLUG_PATTERN,
            "description": "stable slug; the Dagster partition key and report folder",
        },
        "name": {"type": "string", "minLength": 1},
        "environment": {"enum": ["staging", "production"]},
        "enabled": {"type": "boolean", "default": True},
        "hubspot_company_id": {"type": "string"},
        "bookmarked": BOOKMARKED_SCHEMA,
        "source": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"type": "string"}},
            "description": "the SIS side; the rest of the block depends on `type`",
        },
        "rules": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "disabled": {
                    "type": "array",
                    "items": {"enum": list(RULE_IDS)},
                    "uniqueItems": True,
                },
            },
        },
        "hold": HOLD_SCHEMA,
        "alerts": CUSTOMER_ALERTS_SCHEMA,
        "notes": {"type": "string"},
        "$comment": {"type": "string"},
        # documentation only (template.json): alternative blocks, each validated like the
        # real one, so the template never drifts from what the connectors accept
        "source_examples": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"type": "string"}},
            },
        },
        "bookmarked_examples": {"type": "array", "items": BOOKMARKED_SCHEMA},
    },
}


class SettingsError(Exception):
    """A problem in one settings file, located by file and JSON path (or line and column)."""

    def __init__(
        self, file: Path | str, where: str, message: str, *, customer_id: str | None = None
    ) -> None:
        self.file = str(file)
        self.where = where
        self.message = message
        #: the customer the file claims to be, when it says (for `SettingsFolder.get`)
        self.customer_id = customer_id
        super().__init__(f"{self.file}: {where}: {message}")


class SettingsErrors(Exception):
    """Every problem found in a settings folder (raised when the caller wants all or none)."""

    def __init__(self, errors: list[SettingsError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass(frozen=True)
class CustomerSettings:
    """One customer's validated settings. `source` and `bookmarked` keep their JSON blocks;
    each connector reads the keys its schema declares."""

    customer_id: str
    name: str
    environment: str
    bookmarked: Mapping[str, Any]
    source: Mapping[str, Any]
    path: Path
    enabled: bool = True
    hubspot_company_id: str | None = None
    disabled_rules: frozenset[str] = field(default_factory=frozenset)
    #: users, enrollments and links -> the share missing from the export that holds a run
    hold_max_missing_share: Mapping[str, float] = field(
        default_factory=lambda: _missing_shares(None)
    )
    #: the fingerprint of the one held export to accept anyway
    hold_accept_once: str | None = None
    #: this customer's alerts: recipients, thresholds, muted (`alerts.config.customer_overrides`)
    alerts: Mapping[str, Any] | None = None

    @property
    def source_type(self) -> str:
        return str(self.source["type"])

    @property
    def bookmarked_type(self) -> str:
        return str(self.bookmarked.get("type", "database"))

    @property
    def bookmarked_customer_id(self) -> int:
        return int(self.bookmarked["customer_id"])

    def resolve_path(self, location: str) -> Path:
        """Relative paths in a settings file are relative to the file's own folder; a
        settings file on S3 has no folder beside it, so its paths must be absolute."""
        path = Path(location).expanduser()
        if path.is_absolute():
            return path
        if is_s3(self.path):
            raise ValueError(
                f"{self.path}: the path {location!r} is relative, and a settings file on S3 "
                "has no folder beside it: name an absolute path or a URL"
            )
        return (self.path.parent / path).resolve()


def _missing_shares(value: Any) -> Mapping[str, float]:
    """`hold.max_missing_share` (validated) -> a share for each of HOLD_TABLES."""
    shares = dict.fromkeys(HOLD_TABLES, DEFAULT_MAX_MISSING_SHARE)
    if isinstance(value, dict):
        shares.update({table: float(share) for table, share in value.items()})
    elif value is not None:
        shares = dict.fromkeys(HOLD_TABLES, float(value))
    return shares  # a plain dict, like `source`: settings copy and pickle as they are


def _json_path(parts: Iterable[Any]) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


_JSON_TYPES = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages that must not repeat the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    for python, name in ((dict, "object"), (list, "array"), (str, "string"), (int, "integer")):
        if isinstance(value, python):
            return _JSON_TYPES[name]
    return _JSON_TYPES["number"]


def _message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message, rewritten where it would repeat the value (a block that may
    hold a pasted secret, a number in a secret's field) or read as a regex."""
    expected = error.validator_value
    if error.validator == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_JSON_TYPES.get(n, n) for n in names)
        return f"must be {wanted}, not {_json_type(error.instance)}"
    if error.validator in ("anyOf", "oneOf"):
        forms = [" and ".join(sub.get("required", [])) for sub in expected]
        if all(forms):
            return "needs " + ", or ".join(forms)
        return "matches none of the allowed forms"
    if error.validator == "pattern" and expected == SLUG_PATTERN:
        return (
            f"{error.instance!r} is not a customer id: use lowercase letters, digits and '-' "
            "(at most 63 characters); it names the Dagster partition and the report folder"
        )
    if error.validator == "enum" and expected == list(RULE_IDS):
        return f"unknown rule {error.instance!r}; known rules: {', '.join(RULE_IDS)}"
    if error.validator == "minLength" and expected == 1:
        return "must not be empty"
    if error.validator == "pattern" and expected == SECURE_URL_PATTERN:
        return (
            "must be an https:// URL without a password (plain http:// only to localhost or "
            "127.0.0.1): credentials and student data travel over it"
        )
    if isinstance(error.instance, dict | list):
        shown = repr(error.instance)
        if error.message.startswith(shown):
            return f"{_json_type(error.instance)} that{error.message[len(shown) :]}"
        return f"invalid {_json_type(error.instance)}"
    return error.message


@lru_cache(maxsize=256)
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    """A JSON Schema pattern as ECMA-262 reads it: `$` (outside a character class) is the
    end of the string. Python's `$` also matches before a final newline, which let the
    customer id "abc\\n" pass and then break the Dagster code location."""
    out, in_class, escaped = [], False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "$" and not in_class:
            char = r"\Z"
        out.append(char)
    return re.compile("".join(out))


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


#: Draft 2020-12 with `pattern` read as the standard says (see `_ecma_regex`); every
#: schema here, the connectors' too, is checked with it
_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _pattern})


def _schema_errors(
    file: Path, document: Any, schema: Mapping[str, Any], prefix: tuple[Any, ...] = ()
) -> list[SettingsError]:
    validator = _Validator(schema)
    errors = []
    # the first MAX_SCHEMA_ERRORS, so a file of a hundred thousand bad items cannot slow
    # the code location's load (iter_errors is lazy)
    found = list(islice(validator.iter_errors(document), MAX_SCHEMA_ERRORS + 1))
    if len(found) > MAX_SCHEMA_ERRORS:
        found = found[:MAX_SCHEMA_ERRORS]
        message = f"more than {MAX_SCHEMA_ERRORS} errors: fix these first"
        errors.append(SettingsError(file, _json_path(prefix), message))
    for error in sorted(found, key=lambda e: list(map(str, e.path))):
        location = _json_path((*prefix, *error.absolute_path))
        message = redact(_message(error))
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - allowed):
                known = ", ".join(sorted(allowed))
                errors.append(
                    SettingsError(
                        file,
                        _json_path((*prefix, *error.absolute_path, key)),
                        f"unknown key {key!r} (allowed here: {known})",
                    )
                )
            continue
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else error.message
            message = f"missing required key {missing!r}"
            location = _json_path((*prefix, *error.absolute_path, missing))
        elif error.validator == "pattern" and error.schema.get("pattern") == REFERENCE_PATTERN:
            message = (
                "must be a credential reference (env:NAME or aws-secretsmanager:ID[#key]), "
                "never the secret itself"
            )
        errors.append(SettingsError(file, location, message))
    return errors


def source_types() -> Mapping[str, Any]:
    """Source type name -> connector class (imported lazily: settings load stays light)."""
    from reconciliation.connectors import SOURCE_CONNECTORS

    return SOURCE_CONNECTORS


def _source_errors(file: Path, source: Any, prefix: tuple[Any, ...]) -> list[SettingsError]:
    """Validate a `source` block by the schema of the connector its `type` names."""
    if not isinstance(source, dict) or not isinstance(source.get("type"), str):
        return []  # the base schema already reports a missing or non-string type
    connectors = source_types()
    connector = connectors.get(source["type"])
    if connector is None:
        known = ", ".join(sorted(connectors))
        message = f"unknown source type {source['type']!r}; known types: {known}"
        return [SettingsError(file, _json_path((*prefix, "type")), message)]
    return _schema_errors(file, source, connector.settings_schema, prefix)


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every value of a parsed JSON document with its path, the document itself first."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nodes(item, (*path, index))


def _url_errors(file: Path, document: Any) -> list[SettingsError]:
    """Every string anywhere in the document that holds a URL with a password or a secret
    query value (`?password=`, `?token=`, ...: `credentials.SECRET_QUERY_KEYS`), and every
    URL value whose port cannot be one. Messages never repeat the URL."""
    errors = []
    for path, value in _nodes(document):
        if not isinstance(value, str) or "://" not in value:
            continue
        where = _json_path(path)
        urls = urls_in(value)
        if any(url_has_literal_password(url) for url in urls):
            errors.append(
                SettingsError(file, where, "holds a password: use a credential reference instead")
            )
        keys = [key for url in urls for key in secret_query_keys(url)]
        if keys:
            shown = ", ".join(repr(key) for key in dict.fromkeys(keys))
            message = (
                f"holds a secret in its query string ({shown}): use a credential reference instead"
            )
            errors.append(SettingsError(file, where, message))
        if urls == [value]:
            port_problem = _port_problem(value)
            if port_problem:
                errors.append(SettingsError(file, where, port_problem))
    return errors


def _port_problem(url: str) -> str | None:
    """What is wrong with a URL's port (urllib raises only when `.port` is read, which
    would be mid-run), or None."""
    try:
        port = urlsplit(url).port
    except ValueError as exc:
        if "port" not in str(exc).lower():
            return "is not a valid URL (unbalanced [ ] around the host)"
        return "has an invalid port: a port is a number from 1 to 65535"
    if port == 0:
        return "has an invalid port: a port is a number from 1 to 65535"
    return None


def validate_document(file: Path, document: Any, *, sources: bool = True) -> list[SettingsError]:
    """All schema problems of one parsed settings document (empty when valid)."""
    errors = _schema_errors(file, document, SETTINGS_SCHEMA)
    if not isinstance(document, dict):
        return errors
    errors += _url_errors(file, document)
    if not sources:
        return errors
    errors += _source_errors(file, document.get("source"), ("source",))
    for index, example in enumerate(document.get("source_examples") or []):
        errors += _source_errors(file, example, ("source_examples", index))
    return errors


class _JsonObject(dict[str, Any]):
    """A parsed JSON object that remembers the keys it held twice (JSON keeps the last)."""

    duplicates: list[str]


def _object(pairs: list[tuple[str, Any]]) -> _JsonObject:
    obj = _JsonObject(pairs)
    counts = Counter(key for key, _ in pairs)
    obj.duplicates = [key for key, n in counts.items() if n > 1]
    return obj


def _duplicate_key_errors(file: Path, document: Any) -> list[SettingsError]:
    """A key written twice in one object: the first value would be silently ignored."""
    return [
        SettingsError(
            file,
            _json_path((*path, key)),
            f"key {key!r} appears more than once (only the last one would count)",
        )
        for path, value in _nodes(document)
        if isinstance(value, _JsonObject)
        for key in value.duplicates
    ]


class _NotJson(ValueError):
    """What Python's json module accepts but JSON does not, or no setting can be."""


def _constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value")


def _integer(text: str) -> int:
    if len(text) > 100:  # int() refuses 4300 digits with a ValueError of its own
        raise _NotJson("a number with more than 100 digits")
    return int(text)


def _number(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NotJson(f"{text} is too large a number")
    return value


def _read_text(file: Path) -> str:
    """The file's text; a folder, a pipe (reading would wait forever) or a huge file is
    refused before it is opened."""
    try:
        status = file.stat()
    except OSError as exc:
        raise SettingsErrors([SettingsError(file, "$", f"cannot read: {exc.strerror}")]) from None
    if not stat.S_ISREG(status.st_mode):
        raise SettingsErrors([SettingsError(file, "$", "not a file")])
    if status.st_size > MAX_FILE_BYTES:
        message = f"too large ({status.st_size} bytes): a settings file is a few kilobytes"
        raise SettingsErrors([SettingsError(file, "$", message)])
    try:
        return file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise SettingsErrors([SettingsError(file, "$", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise SettingsErrors([SettingsError(file, "$", f"not UTF-8 ({exc.reason})")]) from None


def parse_file(file: Path, *, sources: bool = True) -> CustomerSettings:
    """Read and validate one settings file; raise SettingsErrors with every problem.
    A UTF-8 byte order mark (Windows editors write one) is accepted."""
    text = _read_text(file)
    if not text.strip():
        raise SettingsErrors([SettingsError(file, "$", "empty file: expected a JSON object")])
    try:
        document = json.loads(
            text,
            object_pairs_hook=_object,
            parse_constant=_constant,
            parse_int=_integer,
            parse_float=_number,
        )
    except json.JSONDecodeError as exc:
        raise SettingsErrors(
            [
                SettingsError(
                    file, f"line {exc.lineno}, column {exc.colno}", f"invalid JSON: {exc.msg}"
                )
            ]
        ) from None
    except _NotJson as exc:
        raise SettingsErrors([SettingsError(file, "$", f"invalid JSON: {exc}")]) from None
    except RecursionError:
        raise SettingsErrors(
            [SettingsError(file, "$", "invalid JSON: nested too deeply")]
        ) from None
    try:
        errors = _duplicate_key_errors(file, document) + validate_document(
            file, document, sources=sources
        )
    except RecursionError:  # parsed, but deeper than the validators' recursion allows
        errors = [SettingsError(file, "$", "nested too deeply to check")]
    claimed = document.get("customer_id") if isinstance(document, dict) else None
    if errors:
        for error in errors:
            error.customer_id = claimed if isinstance(claimed, str) else None
        raise SettingsErrors(errors)
    hold = document.get("hold") or {}
    return CustomerSettings(
        customer_id=document["customer_id"],
        name=document["name"],
        environment=document["environment"],
        bookmarked=document["bookmarked"],
        source=document["source"],
        path=file.resolve(),
        enabled=document.get("enabled", True),
        hubspot_company_id=document.get("hubspot_company_id"),
        disabled_rules=frozenset((document.get("rules") or {}).get("disabled", [])),
        hold_max_missing_share=_missing_shares(hold.get("max_missing_share")),
        hold_accept_once=hold.get("accept_once"),
        alerts=document.get("alerts"),
    )


@dataclass
class SettingsFolder:
    """The customers of a settings folder, plus every error found while reading it.

    One bad file never hides the others: valid customers load, errors are collected.
    """

    folder: Path
    customers: dict[str, CustomerSettings]
    errors: list[SettingsError]

    def get(self, customer_id: str) -> CustomerSettings:
        """The customer's settings; when its file is invalid, the error says why."""
        try:
            return self.customers[customer_id]
        except KeyError:
            own = [
                e
                for e in self.errors
                if e.customer_id == customer_id
                or Path(e.file).name.lower() == f"{customer_id}.json"
            ]
            if own:
                reasons = "; ".join(f"{e.where}: {e.message}" for e in own)
                raise KeyError(
                    f"settings for customer {customer_id!r} are invalid: {own[0].file}: {reasons}"
                ) from None
            known = ", ".join(sorted(self.customers)) or "none"
            raise KeyError(
                f"no valid settings for customer {customer_id!r} in {self.folder} (known: {known})"
            ) from None


def settings_files(folder: Path) -> list[Path]:
    """The settings files of a folder: `*.json` in any case, hidden files left out (an
    editor's lock or backup file); sorted by name."""
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() == ".json" and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def _is_template(file: Path) -> bool:
    return file.name.lower() == TEMPLATE_NAME


def _read_one(file: Path, sources: bool) -> CustomerSettings | list[SettingsError]:
    """One file's settings or its errors. Nothing a file holds may stop the others: an
    error this module did not foresee becomes that file's error too."""
    try:
        return parse_file(file, sources=sources)
    except SettingsErrors as exc:
        return exc.errors
    except Exception as exc:  # one file must never stop the others
        message = f"cannot be checked ({type(exc).__name__}); please report this file"
        return [SettingsError(file, "$", message)]


def _shared_id_errors(parsed: list[CustomerSettings]) -> list[SettingsError]:
    """Two files of one customer_id, or of one Bookmarked customer in one environment
    (a file copied for a new district whose Bookmarked id was not changed would compare
    that district's SIS with another district's accounts): each names the other file, and
    neither runs until a person says which is right. Staging is its own Bookmarked
    database, whose ids repeat production's."""
    errors = []
    for settings in parsed:
        same_id = [s.path.name for s in parsed if s.customer_id == settings.customer_id]
        if len(same_id) > 1:
            others = ", ".join(name for name in same_id if name != settings.path.name)
            errors.append(
                SettingsError(
                    settings.path,
                    "$.customer_id",
                    f"customer_id {settings.customer_id!r} is also used by {others}: "
                    "each customer has one file",
                    customer_id=settings.customer_id,
                )
            )
        same_bookmarked = [
            s.path.name
            for s in parsed
            if s.bookmarked_customer_id == settings.bookmarked_customer_id
            and s.environment == settings.environment
            and s.customer_id != settings.customer_id  # one customer twice: refused above
        ]
        if same_bookmarked:
            errors.append(
                SettingsError(
                    settings.path,
                    "$.bookmarked.customer_id",
                    f"Bookmarked customer_id {settings.bookmarked_customer_id} "
                    f"({settings.environment}) is also used by {', '.join(same_bookmarked)}: "
                    "each Bookmarked customer has one settings file per environment",
                    customer_id=settings.customer_id,
                )
            )
    return errors


def load_settings(
    folder: Path | None = None, *, include_template: bool = False, sources: bool = True
) -> SettingsFolder:
    """Every customer of a folder. `sources=False` skips the connector-specific checks of
    the `source` blocks (and the import of every connector): the Dagster definitions use
    it to list the customers quickly; each run validates its customer in full.

    Two files with one customer_id (a copy whose id was not changed, say), or with one
    Bookmarked customer in one environment, are all refused, each naming the others. The
    template is validated with `include_template` but claims no id. Never raises: every
    problem is an error of the folder or of one file."""
    folder = (folder or settings_dir()).resolve()
    if not folder.is_dir():
        return SettingsFolder(folder, {}, [SettingsError(folder, "$", "settings folder not found")])
    try:
        files = settings_files(folder)
    except OSError as exc:
        message = f"cannot read the settings folder: {exc.strerror}"
        return SettingsFolder(folder, {}, [SettingsError(folder, "$", message)])
    parsed: list[CustomerSettings] = []
    errors: list[SettingsError] = []
    template: CustomerSettings | None = None
    for file in files:
        if _is_template(file) and not include_template:
            continue
        result = _read_one(file, sources)
        if isinstance(result, list):
            errors += result
        elif _is_template(file):
            template = result
        else:
            parsed.append(result)
    refused = _shared_id_errors(parsed)
    errors += refused
    refused_files = {error.file for error in refused}
    customers = {s.customer_id: s for s in parsed if str(s.path) not in refused_files}
    if template is not None and template.customer_id not in customers:
        customers[template.customer_id] = template
    errors.sort(key=lambda e: e.file)  # stable: each file's errors stay in document order
    return SettingsFolder(folder, customers, errors)
