"""Customer settings: the minimal file is valid, and every error names file and JSON path."""

from __future__ import annotations

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
    write(tmp_path, "other-district.json", {**MINIMAL, "customer_id": "other-district"})
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
    write(tmp_path, "other-district.json", {**MINIMAL, "customer_id": "other-district"})
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
