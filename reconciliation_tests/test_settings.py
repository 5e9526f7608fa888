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
    assert "$.bookmarked.customer_id: '1042' is not of type 'integer'" in errors


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
    write(tmp_path, "lincoln-copy.json", {**MINIMAL, "name": "copy"})
    write(tmp_path, "broken.json", "{")
    write(tmp_path, "other.json", {**MINIMAL, "customer_id": "other-district"})
    write(tmp_path, "template.json", {**MINIMAL, "customer_id": "template-only"})
    folder = load_settings(tmp_path)
    assert sorted(folder.customers) == ["lincoln-usd", "other-district"]
    messages = [str(e) for e in folder.errors]
    assert len(messages) == 2
    assert any("broken.json: line 1, column 2: invalid JSON" in m for m in messages)
    duplicate = next(e for e in folder.errors if e.where == "$.customer_id")
    assert duplicate.file.endswith("lincoln-usd.json") or duplicate.file.endswith(
        "lincoln-copy.json"
    )
    assert "already used by" in duplicate.message
    assert "template-only" in load_settings(tmp_path, include_template=True).customers


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
