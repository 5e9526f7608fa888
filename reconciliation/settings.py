"""Customer integration settings: one JSON file per customer, validated by JSON Schema.

Every error names the file and the JSON path (`$.source.type`), so a support engineer can
fix a file without reading code. The `source` block is validated by the schema of its
`type`, which each source connector declares next to its code: adding a connector adds
its settings without touching this module.

Credentials in settings are references (`env:NAME`, `aws-secretsmanager:ID#key`), resolved
only when a connection opens (see `credentials.py`). A URL that embeds a password is refused
wherever it appears, and no message repeats a value that could be a secret.

A folder holds one `*.json` file per customer (by convention `<customer_id>.json`; two
files with one customer_id are both refused) plus `template.json`, which is validated but
never a customer. Other files (`*.md`, `*.bak`, ...) are ignored.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from reconciliation.credentials import REFERENCE_PATTERN, redact, url_has_literal_password

# re-exported: callers find the settings folder here
from reconciliation.paths import DEFAULT_SETTINGS_DIR as DEFAULT_SETTINGS_DIR
from reconciliation.paths import PROJECT_ROOT as PROJECT_ROOT
from reconciliation.paths import settings_dir

TEMPLATE_NAME = "template.json"

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
                "disabled": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            },
        },
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

    def __init__(self, file: Path | str, where: str, message: str) -> None:
        self.file = str(file)
        self.where = where
        self.message = message
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
        """Relative paths in a settings file are relative to the file's own folder."""
        path = Path(location).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).resolve()


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


def _schema_errors(
    file: Path, document: Any, schema: Mapping[str, Any], prefix: tuple[Any, ...] = ()
) -> list[SettingsError]:
    validator = jsonschema.Draft202012Validator(schema)
    errors = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.path))):
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


def _literal_password_errors(file: Path, document: Any) -> list[SettingsError]:
    """Every string anywhere in the document that is a URL with a password in it."""
    message = "holds a password: use a credential reference instead"
    return [
        SettingsError(file, _json_path(path), message)
        for path, value in _nodes(document)
        if isinstance(value, str) and url_has_literal_password(value)
    ]


def validate_document(file: Path, document: Any, *, sources: bool = True) -> list[SettingsError]:
    """All schema problems of one parsed settings document (empty when valid)."""
    errors = _schema_errors(file, document, SETTINGS_SCHEMA)
    if not isinstance(document, dict):
        return errors
    errors += _literal_password_errors(file, document)
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


def parse_file(file: Path, *, sources: bool = True) -> CustomerSettings:
    """Read and validate one settings file; raise SettingsErrors with every problem.
    A UTF-8 byte order mark (Windows editors write one) is accepted."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise SettingsErrors([SettingsError(file, "$", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise SettingsErrors([SettingsError(file, "$", f"not UTF-8 ({exc.reason})")]) from None
    if not text.strip():
        raise SettingsErrors([SettingsError(file, "$", "empty file: expected a JSON object")])
    try:
        document = json.loads(text, object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        raise SettingsErrors(
            [
                SettingsError(
                    file, f"line {exc.lineno}, column {exc.colno}", f"invalid JSON: {exc.msg}"
                )
            ]
        ) from None
    errors = _duplicate_key_errors(file, document) + validate_document(
        file, document, sources=sources
    )
    if errors:
        raise SettingsErrors(errors)
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
            own = [e for e in self.errors if Path(e.file).name == f"{customer_id}.json"]
            if own:
                reasons = "; ".join(f"{e.where}: {e.message}" for e in own)
                raise KeyError(
                    f"settings for customer {customer_id!r} are invalid: {own[0].file}: {reasons}"
                ) from None
            known = ", ".join(sorted(self.customers)) or "none"
            raise KeyError(
                f"no valid settings for customer {customer_id!r} in {self.folder} (known: {known})"
            ) from None


def load_settings(
    folder: Path | None = None, *, include_template: bool = False, sources: bool = True
) -> SettingsFolder:
    """Every customer of a folder. `sources=False` skips the connector-specific checks of
    the `source` blocks (and the import of every connector): the Dagster definitions use
    it to list the customers quickly; each run validates its customer in full.

    Two files with one customer_id are both refused (a copy whose id was not changed, say),
    each naming the other. The template is validated with `include_template` but claims
    no id."""
    folder = (folder or settings_dir()).resolve()
    if not folder.is_dir():
        return SettingsFolder(folder, {}, [SettingsError(folder, "$", "settings folder not found")])
    parsed: list[CustomerSettings] = []
    errors: list[SettingsError] = []
    template: CustomerSettings | None = None
    for file in sorted(folder.glob("*.json")):
        if file.name == TEMPLATE_NAME and not include_template:
            continue
        try:
            settings = parse_file(file, sources=sources)
        except SettingsErrors as exc:
            errors += exc.errors
            continue
        if file.name == TEMPLATE_NAME:
            template = settings
        else:
            parsed.append(settings)
    customers: dict[str, CustomerSettings] = {}
    for settings in parsed:
        same_id = [s.path.name for s in parsed if s.customer_id == settings.customer_id]
        if len(same_id) == 1:
            customers[settings.customer_id] = settings
            continue
        # which file is the customer's is for a person to decide: neither runs until then
        others = ", ".join(name for name in same_id if name != settings.path.name)
        errors.append(
            SettingsError(
                settings.path,
                "$.customer_id",
                f"customer_id {settings.customer_id!r} is also used by {others}: "
                "each customer has one file",
            )
        )
    if template is not None and template.customer_id not in customers:
        customers[template.customer_id] = template
    errors.sort(key=lambda e: e.file)  # stable: each file's errors stay in document order
    return SettingsFolder(folder, customers, errors)
