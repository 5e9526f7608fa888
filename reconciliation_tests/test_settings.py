"""Customer settings: the minimal file is valid, and every error names file and JSON path."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from reconciliation.settings import (
    DEFAULT_SETTINGS_DIR,
    SettingsErrors,
    load_settings,
    parse_file,
)

MINIMAL = {
    "customer_id": "lincoln-usd",
    "name": "Lincoln Unified",
    "environment": "production",
    "bookmarked": {"customer_id": 1042, "database_url": "env:BOOKMARKED_PROD_DB_URL"},
    "source": {"type": "oneroster_csv", "location": "/data/lincoln/oneroster.zip"},
}


#: another district: its own customer_id and its own Bookmarked customer
OTHER = {
    **MINIMAL,
    "customer_id": "other-district",
    "bookmarked": {**MINIMAL["bookmarked"], "customer_id": 7},
}


def write(folder: Path, name: str, document: object) -> Path:
    path = folder / name
    path.write_text(document if isinstance(document, str) else json.dumps(document, indent=2))
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(SettingsErrors) as caught:
        parse_file(path)
    return [f"{e.where}: {e.message}" for e in caught.value.errors]


def test_minimal_file_is_valid(tmp_path: Path) -> None:
    settings = parse_file(write(tmp_path, "lincoln-usd.json", MINIMAL))
    assert settings.customer_id == "lincoln-usd"
    assert settings.environment == "production"
    assert settings.source_type == "oneroster_csv"
    assert settings.bookmarked_type == "database"
    assert settings.bookmarked_customer_id == 1042
    assert settings.enabled is True
    assert settings.disabled_rules == frozenset()


def test_malformed_json_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.json", '{\n  "customer_id": "x",\n  "name": ,\n}')
    with pytest.raises(SettingsErrors) as caught:
        parse_file(path)
    (error,) = caught.value.errors
    assert error.file == str(path)
    assert error.where == "line 3, column 11"
    assert "invalid JSON" in error.message
    assert str(error).startswith(f"{path}: line 3, column 11: invalid JSON")


def test_missing_keys_are_named_by_path(tmp_path: Path) -> None:
    document = {**MINIMAL, "bookmarked": {"database_url": "env:X"}}
    del document["environment"]
    assert set(errors_of(write(tmp_path, "a.json", document))) == {
        "$.environment: missing required key 'environment'",
        "$.bookmarked.customer_id: missing required key 'customer_id'",
    }


def test_unknown_keys_are_named_by_path(tmp_path: Path) -> None:
    document = {**MINIMAL, "colour": "blue", "source": {**MINIMAL["source"], "locaton": "/typo"}}
    errors = errors_of(write(tmp_path, "a.json", document))
    assert any(e.startswith("$.colour: unknown key 'colour'") for e in errors)
    assert any(e.startswith("$.source.locaton: unknown key 'locaton'") for e in errors)


def test_wrong_types_and_values(tmp_path: Path) -> None:
    document = {
        **MINIMAL,
        "environment": "prod",
        "bookmarked": {"customer_id": "1042", "database_url": "env:X"},
    }
    errors = errors_of(write(tmp_path, "a.json", document))
    assert "$.environment: 'prod' is not one of ['staging', 'production']" in errors
    assert "$.bookmarked.customer_id: must be an integer, not a string" in errors


def test_unknown_source_type_lists_the_known_ones(tmp_path: Path) -> None:
    document = {**MINIMAL, "source": {"type": "powerschool_magic", "location": "x"}}
    (error,) = errors_of(write(tmp_path, "a.json", document))
    assert error.startswith("$.source.type: unknown source type 'powerschool_magic'; known types:")
    assert "oneroster_csv" in error


def test_secrets_must_be_references(tmp_path: Path) -> None:
    document = {
        **MINIMAL,
        "bookmarked": {"customer_id": 1, "database_url": "postgresql://app:s3cret@db/x"},
        "source": {**MINIMAL["source"], "password": "hunter2"},
    }
    errors = errors_of(write(tmp_path, "a.json", document))
    assert (
        "$.bookmarked.database_url: holds a password: use a credential reference instead" in errors
    )
    assert any(e.startswith("$.source.password: must be a credential reference") for e in errors)
    assert not any("s3cret" in e or "hunter2" in e for e in errors)


def test_api_bookmarked_block_needs_its_keys(tmp_path: Path) -> None:
    document = {**MINIMAL, "bookmarked": {"customer_id": 1, "type": "api"}}
    errors = errors_of(write(tmp_path, "a.json", document))
    assert "$.bookmarked.base_url: missing required key 'base_url'" in errors
    assert "$.bookmarked.client_secret: missing required key 'client_secret'" in errors


def test_folder_collects_every_error_and_keeps_valid_customers(tmp_path: Path) -> None:
    write(tmp_path, "lincoln-usd.json", MINIMAL)
    write(tmp_path, "broken.json", "{")
    write(tmp_path, "other-district.json", OTHER)
    write(tmp_path, "template.json", {**MINIMAL, "customer_id": "template-only"})
    folder = load_settings(tmp_path)
    assert sorted(folder.customers) == ["lincoln-usd", "other-district"]
    (error,) = folder.errors
    assert "broken.json: line 1, column 2: invalid JSON" in str(error)
    assert "template-only" in load_settings(tmp_path, include_template=True).customers


def test_two_files_with_one_customer_id_are_both_refused(tmp_path: Path) -> None:
    """A copy whose id was not changed: which file is the customer's is for a person to say,
    and the other customers still load."""
    write(tmp_path, "lincoln-usd.json", MINIMAL)
    write(tmp_path, "lincoln-copy.json", {**MINIMAL, "name": "copy"})
    write(tmp_path, "other-district.json", OTHER)
    folder = load_settings(tmp_path)
    assert sorted(folder.customers) == ["other-district"]
    assert {(Path(e.file).name, e.where, e.message) for e in folder.errors} == {
        (
            "lincoln-copy.json",
            "$.customer_id",
            "customer_id 'lincoln-usd' is also used by lincoln-usd.json: each customer has one "
            "file",
        ),
        (
            "lincoln-usd.json",
            "$.customer_id",
            "customer_id 'lincoln-usd' is also used by lincoln-copy.json: each customer has one "
            "file",
        ),
    }


def test_file_name_need_not_be_the_customer_id(tmp_path: Path) -> None:
    """`<customer_id>.json` is the convention, not a rule: the issue's minimal file is valid
    under any name."""
    write(tmp_path, "lincoln.json", MINIMAL)
    folder = load_settings(tmp_path)
    assert folder.errors == []
    assert folder.customers["lincoln-usd"].path.name == "lincoln.json"


def test_template_claims_no_customer_id(tmp_path: Path) -> None:
    """The shipped template uses the issue's example id; a real customer may too."""
    write(tmp_path, "lincoln-usd.json", MINIMAL)
    write(tmp_path, "template.json", {**MINIMAL, "name": "template"})
    folder = load_settings(tmp_path, include_template=True)
    assert folder.errors == []
    assert folder.customers["lincoln-usd"].name == "Lincoln Unified"


@pytest.mark.parametrize(
    ("content", "where", "message"),
    [
        ("", "$", "empty file: expected a JSON object"),
        ("  \n", "$", "empty file: expected a JSON object"),
        ("[1, 2]", "$", "must be an object, not an array"),
        ('"text"', "$", "must be an object, not a string"),
    ],
)
def test_files_that_are_no_object(tmp_path: Path, content: str, where: str, message: str) -> None:
    assert errors_of(write(tmp_path, "a.json", content)) == [f"{where}: {message}"]


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "lincoln-usd.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(MINIMAL).encode())
    assert parse_file(path).customer_id == "lincoln-usd"


def test_other_files_in_the_folder_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "lincoln-usd.json", MINIMAL)
    write(tmp_path, "README.md", "# notes")
    write(tmp_path, "lincoln-usd.json.bak", "{")
    folder = load_settings(tmp_path)
    assert list(folder.customers) == ["lincoln-usd"] and folder.errors == []


@pytest.mark.parametrize("customer_id", ["Lincoln USD", "lincoln_usd", "LINCOLN", "-lincoln"])
def test_customer_id_is_a_partition_safe_slug(tmp_path: Path, customer_id: str) -> None:
    (error,) = errors_of(write(tmp_path, "a.json", {**MINIMAL, "customer_id": customer_id}))
    assert error.startswith(f"$.customer_id: {customer_id!r} is not a customer id")


def test_unknown_keys_inside_nested_blocks(tmp_path: Path) -> None:
    document = {
        **MINIMAL,
        "bookmarked": {**MINIMAL["bookmarked"], "schema": "x"},
        "rules": {"disabled": [], "enabled": []},
    }
    errors = errors_of(write(tmp_path, "a.json", document))
    assert any(e.startswith("$.bookmarked.schema: unknown key 'schema'") for e in errors)
    assert any(e.startswith("$.rules.enabled: unknown key 'enabled'") for e in errors)


def test_a_key_written_twice_is_an_error(tmp_path: Path) -> None:
    text = json.dumps(MINIMAL)[:-1] + ', "environment": "staging"}'
    assert errors_of(write(tmp_path, "a.json", text)) == [
        "$.environment: key 'environment' appears more than once (only the last one would count)"
    ]


@pytest.mark.parametrize(
    ("block", "key", "value"),
    [
        ("source", "location", "sftp://bookmarked:hunter2hunter2@sftp.example/out"),
        ("source", "location", "ftps://bookmarked:hunter2hunter2@ftp.example/roster"),
        ("bookmarked", "database_url", "postgresql://app:hunter2hunter2@db/x"),
    ],
)
def test_passwords_in_urls_are_refused_anywhere(
    tmp_path: Path, block: str, key: str, value: str
) -> None:
    document = {**MINIMAL, block: {**MINIMAL[block], key: value}}
    errors = errors_of(write(tmp_path, "a.json", document))
    assert errors == [f"$.{block}.{key}: holds a password: use a credential reference instead"]


def test_messages_never_repeat_a_block_or_a_secret(tmp_path: Path) -> None:
    """jsonschema prints the whole failing value; a block may hold a pasted secret."""
    document = {
        **MINIMAL,
        "bookmarked": {
            "customer_id": 1,
            "type": "api",
            "base_url": "https://api.example",
            "client_id": "c",
            "client_secret": 123456789,
        },
        "source": {
            "type": "oneroster_api",
            "base_url": "https://sis.example/ims/oneroster/v1p1",
            "auth": {"method": "oauth1", "consumer_key": "hunter2hunter2"},
        },
    }
    errors = errors_of(write(tmp_path, "a.json", document))
    assert "$.bookmarked.client_secret: must be a string, not an integer" in errors
    assert (
        "$.source.auth: needs consumer_key and consumer_secret, or client_id and client_secret"
        in errors
    )
    assert not any("hunter2" in e or "123456789" in e for e in errors)


def test_a_failing_customer_says_why(tmp_path: Path) -> None:
    write(tmp_path, "lincoln-usd.json", {**MINIMAL, "environment": "prod"})
    with pytest.raises(KeyError, match=r"lincoln-usd\.json: \$\.environment: 'prod'"):
        load_settings(tmp_path).get("lincoln-usd")


def test_settings_dir_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "lincoln-usd.json", MINIMAL)
    monkeypatch.setenv("RECONCILIATION_SETTINGS_DIR", str(tmp_path))
    assert list(load_settings().customers) == ["lincoln-usd"]


def test_relative_locations_resolve_against_the_settings_file(tmp_path: Path) -> None:
    settings = parse_file(write(tmp_path, "a.json", MINIMAL))
    assert settings.resolve_path("../data/x.zip") == (tmp_path.parent / "data" / "x.zip").resolve()
    assert settings.resolve_path("/abs/x.zip") == Path("/abs/x.zip")


def test_shipped_settings_and_template_are_valid() -> None:
    folder = load_settings(DEFAULT_SETTINGS_DIR, include_template=True)
    assert folder.errors == []
    assert {"riverside-usd", "maple-charter", "lincoln-usd"} <= set(folder.customers)


def test_template_shows_every_connector_kind() -> None:
    from reconciliation.connectors import BOOKMARKED_CONNECTORS, SOURCE_CONNECTORS

    template = json.loads((DEFAULT_SETTINGS_DIR / "template.json").read_text())
    shown = {template["source"]["type"]} | {e["type"] for e in template["source_examples"]}
    assert shown == set(SOURCE_CONNECTORS)
    schemes = {
        e["location"].split("://")[0]
        for e in template["source_examples"]
        if e["type"] == "oneroster_csv" and "://" in e["location"]
    }
    assert schemes >= {"sftp", "ftps", "s3"}
    bookmarked = {e.get("type", "database") for e in template["bookmarked_examples"]}
    assert bookmarked == set(BOOKMARKED_CONNECTORS)


def test_examples_are_validated_like_real_blocks(tmp_path: Path) -> None:
    document = {
        **MINIMAL,
        "source_examples": [
            {"type": "oneroster_csv", "location": "x"},
            {
                "type": "oneroster_api",
                "base_url": "https://h/ims/oneroster/v1p1",
                "auth": {"method": "oauth1", "consumer_key": "k", "consumer_secret": "plain"},
            },
            {"type": "nope"},
        ],
    }
    errors = errors_of(write(tmp_path, "a.json", document))
    assert any(
        e.startswith("$.source_examples[1].auth.consumer_secret: must be a credential")
        for e in errors
    )
    assert any(
        e.startswith("$.source_examples[2].type: unknown source type 'nope'") for e in errors
    )


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("https://api.bookmarked.example/v1", True),
        ("http://127.0.0.1:8080/v1", True),
        ("http://localhost/v1", True),
        ("http://api.bookmarked.example/v1", False),  # the client secret would travel in clear
        ("http://localhost.evil.example/v1", False),
        ("https://user:pw@api.bookmarked.example/v1", False),
    ],
)
def test_api_urls_must_be_https_except_to_this_machine(
    tmp_path: Path, url: str, valid: bool
) -> None:
    bookmarked = {
        "customer_id": 1042,
        "type": "api",
        "base_url": url,
        "client_id": "env:BM_CLIENT_ID",
        "client_secret": "env:BM_CLIENT_SECRET",
    }
    write(tmp_path, "lincoln-usd.json", {**MINIMAL, "bookmarked": bookmarked})
    errors = load_settings(tmp_path).errors
    if valid:
        assert errors == []
    else:
        assert {error.where for error in errors} == {"$.bookmarked.base_url"}
        assert any("must be an https:// URL" in error.message for error in errors)
        assert not any(":pw@" in str(error) for error in errors)


def test_two_files_with_one_bookmarked_customer_are_both_refused(tmp_path: Path) -> None:
    """A file copied for a new district whose Bookmarked id was not changed would compare
    the new district's SIS with the other district's accounts: neither runs until fixed."""
    write(tmp_path, "lincoln-usd.json", MINIMAL)
    write(tmp_path, "jefferson-usd.json", {**MINIMAL, "customer_id": "jefferson-usd"})
    write(tmp_path, "other-district.json", OTHER)
    folder = load_settings(tmp_path)
    assert sorted(folder.customers) == ["other-district"]
    message = (
        "Bookmarked customer_id 1042 ({env}) is also used by {other}: each Bookmarked customer "
        "has one settings file per environment"
    )
    assert {(Path(e.file).name, e.where, e.message) for e in folder.errors} == {
        (
            "jefferson-usd.json",
            "$.bookmarked.customer_id",
            message.format(env="production", other="lincoln-usd.json"),
        ),
        (
            "lincoln-usd.json",
            "$.bookmarked.customer_id",
            message.format(env="production", other="jefferson-usd.json"),
        ),
    }
    with pytest.raises(KeyError, match=r"jefferson-usd\.json: \$\.bookmarked\.customer_id"):
        folder.get("jefferson-usd")


def test_one_bookmarked_customer_in_staging_and_production_is_fine(tmp_path: Path) -> None:
    """Staging is its own Bookmarked database, where customer ids repeat production's."""
    write(tmp_path, "lincoln-usd.json", MINIMAL)
    staging = {**MINIMAL, "customer_id": "lincoln-usd-staging", "environment": "staging"}
    write(tmp_path, "lincoln-usd-staging.json", staging)
    folder = load_settings(tmp_path)
    assert folder.errors == []
    assert sorted(folder.customers) == ["lincoln-usd", "lincoln-usd-staging"]


SECRET_IN_QUERY = "holds a secret in its query string ({key!r}): use a credential reference instead"


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        ("bookmarked.database_url", "postgresql://u@db/x?password=hunter2hunter2", "password"),
        (
            "bookmarked.database_url",
            "postgresql://db/x?sslmode=require&PassWord=hunter2hunter2",
            "PassWord",
        ),
        ("bookmarked.database_url", "postgresql://db/x?sslpassword=hunter2hunter2", "sslpassword"),
        ("source.location", "sftp://sftp.example/out?passwd=hunter2hunter2", "passwd"),
        (
            "source.location",
            "s3://bucket/x/?X-Amz-Security-Token=hunter2hunter2",
            "X-Amz-Security-Token",
        ),
        ("source.location", "https://files.example/x.zip?API_KEY=hunter2hunter2", "API_KEY"),
        (
            "notes",
            "Export at https://files.example/x.zip?access_token=hunter2hunter2",
            "access_token",
        ),
    ],
)
def test_secrets_in_query_strings_are_refused_anywhere(
    tmp_path: Path, path: str, value: str, key: str
) -> None:
    block, _, name = path.rpartition(".")
    document = json.loads(json.dumps(MINIMAL))
    (document[block] if block else document)[name] = value
    errors = errors_of(write(tmp_path, "a.json", document))
    assert f"$.{path}: {SECRET_IN_QUERY.format(key=key)}" in errors
    assert not any("hunter2" in e for e in errors)


def test_secret_query_keys_in_an_api_url(tmp_path: Path) -> None:
    bookmarked = {
        "customer_id": 1042,
        "type": "api",
        "base_url": "https://api.bookmarked.example/v1?client_secret=hunter2hunter2",
        "client_id": "env:BM_CLIENT_ID",
        "client_secret": "env:BM_CLIENT_SECRET",
    }
    errors = errors_of(write(tmp_path, "a.json", {**MINIMAL, "bookmarked": bookmarked}))
    assert errors == [f"$.bookmarked.base_url: {SECRET_IN_QUERY.format(key='client_secret')}"]


def test_harmless_query_strings_are_accepted(tmp_path: Path) -> None:
    bookmarked = {
        **MINIMAL["bookmarked"],
        "database_url": "postgresql://reader@db/x?sslmode=require&application_name=recon",
    }
    assert parse_file(write(tmp_path, "a.json", {**MINIMAL, "bookmarked": bookmarked}))


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://db.example:99999/bookmarked",
        "https://files.example:abc/x.zip",
        "ftp://files.example:0/x",
        "sftp://files.example:-22/x",
        "postgresql://u@h1:5432,h2:5433/db",
        "https://[::1/x",
    ],
)
def test_a_bad_port_in_a_url_is_a_validation_error(tmp_path: Path, url: str) -> None:
    document = {**MINIMAL, "source": {**MINIMAL["source"], "location": url}}
    errors = errors_of(write(tmp_path, "a.json", document))
    assert len(errors) == 1 and errors[0].startswith("$.source.location: ")
    assert "port" in errors[0] or "not a valid URL" in errors[0]


def test_bad_port_message(tmp_path: Path) -> None:
    bookmarked = {**MINIMAL["bookmarked"], "database_url": "postgresql://db:99999/x"}
    assert errors_of(write(tmp_path, "a.json", {**MINIMAL, "bookmarked": bookmarked})) == [
        "$.bookmarked.database_url: has an invalid port: a port is a number from 1 to 65535"
    ]


@pytest.mark.parametrize("customer_id", ["abc\n", "lincoln-usd\n", "\nabc"])
def test_a_newline_in_a_customer_id_is_refused(tmp_path: Path, customer_id: str) -> None:
    """Python's `$` matches before a final newline; a partition key with one breaks the
    Dagster code location for every customer."""
    (error,) = errors_of(write(tmp_path, "a.json", {**MINIMAL, "customer_id": customer_id}))
    assert error.startswith(f"$.customer_id: {customer_id!r} is not a customer id")


def test_a_newline_after_a_credential_reference_is_refused(tmp_path: Path) -> None:
    source = {**MINIMAL["source"], "password": "env:FTP_PASSWORD\n"}
    (error,) = errors_of(write(tmp_path, "a.json", {**MINIMAL, "source": source}))
    assert error.startswith("$.source.password: must be a credential reference")


def test_unknown_rule_ids_list_the_known_ones(tmp_path: Path) -> None:
    from reconciliation.rules import RULE_IDS

    document = {**MINIMAL, "rules": {"disabled": ["stale_record", "stale_records"]}}
    assert errors_of(write(tmp_path, "a.json", document)) == [
        "$.rules.disabled[1]: unknown rule 'stale_records'; known rules: " + ", ".join(RULE_IDS)
    ]
    document = {**MINIMAL, "rules": {"disabled": ["stale_record"]}}
    assert parse_file(write(tmp_path, "b.json", document)).disabled_rules == {"stale_record"}


def test_upper_case_extensions_are_settings_files(tmp_path: Path) -> None:
    write(tmp_path, "lincoln-usd.JSON", MINIMAL)
    write(tmp_path, "other-district.Json", OTHER)
    write(tmp_path, "broken.JSON", "{")
    folder = load_settings(tmp_path)
    assert sorted(folder.customers) == ["lincoln-usd", "other-district"]
    assert [(Path(e.file).name, e.where) for e in folder.errors] == [
        ("broken.JSON", "line 1, column 2")
    ]


def test_files_that_cannot_be_settings_are_errors_and_the_others_load(tmp_path: Path) -> None:
    write(tmp_path, "lincoln-usd.json", MINIMAL)
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "latin1.json").write_bytes(b'{"name": "caf\xe9"}')
    write(tmp_path, "list.json", "[]")
    write(tmp_path, "nan.json", json.dumps(MINIMAL)[:-1] + ', "notes": NaN}')
    write(tmp_path, "digits.json", '{"customer_id": ' + "9" * 5000 + "}")
    write(tmp_path, "deep.json", "[" * 100_000 + "]" * 100_000)
    write(tmp_path, "nested.json", '{"notes": ' + "[" * 900 + "]" * 900 + "}")
    (tmp_path / "dangling.json").symlink_to(tmp_path / "nowhere.json")
    import os

    os.mkfifo(tmp_path / "pipe.json")  # reading it would wait forever
    folder = load_settings(tmp_path)
    assert list(folder.customers) == ["lincoln-usd"]
    found = {Path(e.file).name: f"{e.where}: {e.message}" for e in folder.errors}
    assert found == {
        "dangling.json": "$: cannot read: No such file or directory",
        "deep.json": "$: invalid JSON: nested too deeply",
        "digits.json": "$: invalid JSON: a number with more than 100 digits",
        "folder.json": "$: not a file",
        "latin1.json": "$: not UTF-8 (invalid continuation byte)",
        "list.json": "$: must be an object, not an array",
        "nan.json": "$: invalid JSON: NaN is not a JSON value",
        "nested.json": found["nested.json"],
        "pipe.json": "$: not a file",
    }
    assert found["nested.json"].startswith("$")


HOLD_DEFAULT = {"users": 0.3, "enrollments": 0.3, "links": 0.3}


@pytest.mark.parametrize(
    ("hold", "shares", "accept_once"),
    [
        (None, HOLD_DEFAULT, None),
        ({}, HOLD_DEFAULT, None),
        ({"max_missing_share": 0.5}, {"users": 0.5, "enrollments": 0.5, "links": 0.5}, None),
        ({"max_missing_share": 0}, {"users": 0.0, "enrollments": 0.0, "links": 0.0}, None),
        (
            {"max_missing_share": {"links": 1}, "accept_once": "sha256:ab12"},
            {"users": 0.3, "enrollments": 0.3, "links": 1.0},
            "sha256:ab12",
        ),
    ],
)
def test_hold_settings(
    tmp_path: Path, hold: dict | None, shares: dict[str, float], accept_once: str | None
) -> None:
    document = {**MINIMAL} if hold is None else {**MINIMAL, "hold": hold}
    settings = parse_file(write(tmp_path, "a.json", document))
    assert dict(settings.hold_max_missing_share) == shares
    assert all(type(share) is float for share in settings.hold_max_missing_share.values())
    assert settings.hold_accept_once == accept_once
    assert copy.deepcopy(settings) == settings  # settings copy as they are


@pytest.mark.parametrize(
    ("hold", "error"),
    [
        (
            {"max_missing_share": 1.5},
            "$.hold.max_missing_share: 1.5 is greater than the maximum of 1",
        ),
        (
            {"max_missing_share": -0.1},
            "$.hold.max_missing_share: -0.1 is less than the minimum of 0",
        ),
        (
            {"max_missing_share": "30%"},
            "$.hold.max_missing_share: must be a number or an object, not a string",
        ),
        (
            {"max_missing_share": True},
            "$.hold.max_missing_share: must be a number or an object, not a boolean",
        ),
        (
            {"max_missing_share": {"user": 0.1}},
            "$.hold.max_missing_share.user: unknown key 'user' "
            "(allowed here: enrollments, links, users)",
        ),
        (
            {"max_missing_share": {"links": 2}},
            "$.hold.max_missing_share.links: 2 is greater than the maximum of 1",
        ),
        ({"accept_once": ""}, "$.hold.accept_once: must not be empty"),
        ({"accept_once": 12}, "$.hold.accept_once: must be a string, not an integer"),
        (
            {"max_share": 0.1},
            "$.hold.max_share: unknown key 'max_share' "
            "(allowed here: accept_once, max_missing_share)",
        ),
    ],
)
def test_bad_hold_settings(tmp_path: Path, hold: dict, error: str) -> None:
    assert errors_of(write(tmp_path, "a.json", {**MINIMAL, "hold": hold})) == [error]


def test_template_documents_the_hold_block() -> None:
    template = json.loads((DEFAULT_SETTINGS_DIR / "template.json").read_text())
    assert set(template["hold"]) == {"max_missing_share"}
    assert "accept_once" in template["$comment"]


def test_customer_settings_keep_their_attributes(tmp_path: Path) -> None:
    """Connectors, rules, assets and the CLI read these: new ones are only added at the end."""
    from dataclasses import fields

    from reconciliation.settings import CustomerSettings

    assert [f.name for f in fields(CustomerSettings)][:9] == [
        "customer_id",
        "name",
        "environment",
        "bookmarked",
        "source",
        "path",
        "enabled",
        "hubspot_company_id",
        "disabled_rules",
    ]


def test_a_flood_of_errors_is_cut_short(tmp_path: Path) -> None:
    """A file of thousands of bad items must not slow the code location's load."""
    document = {**MINIMAL, "rules": {"disabled": [f"rule-{n}" for n in range(150)]}}
    errors = errors_of(write(tmp_path, "a.json", document))
    assert errors[0] == "$: more than 100 errors: fix these first"
    assert len(errors) == 101
    assert errors[1].startswith("$.rules.disabled[0]: unknown rule 'rule-0'")
