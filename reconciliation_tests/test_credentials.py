"""Credential references: resolved on demand from the environment or AWS Secrets Manager
(moto's real server), cached for the run, and never shown."""

from __future__ import annotations

import json
import logging

import boto3
import pytest

from reconciliation.credentials import (
    CredentialError,
    CredentialResolver,
    Secret,
    is_reference,
    mask_url,
    redact,
)


def test_env_reference_resolves_and_is_masked() -> None:
    resolver = CredentialResolver({"DB_URL": "postgresql://app:pa55word@db/x"})
    secret = resolver.resolve("env:DB_URL")
    assert secret.reveal() == "postgresql://app:pa55word@db/x"
    assert "pa55word" not in repr(secret) and "pa55word" not in str(secret)
    assert repr(secret) == "Secret(env:DB_URL, ****)"
    assert "pa55word" not in f"{secret}" and "pa55word" not in repr([secret])


def test_missing_env_variable_names_the_reference() -> None:
    with pytest.raises(CredentialError, match=r"env:NOPE: the environment variable is not set"):
        CredentialResolver({}).resolve("env:NOPE")


def test_malformed_reference_is_refused() -> None:
    with pytest.raises(CredentialError, match="not a credential reference"):
        CredentialResolver({}).resolve("vault:thing")


def test_secret_never_pickles() -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(Secret("env:X", "value"))


def test_redact_removes_resolved_values_and_url_passwords(caplog: pytest.LogCaptureFixture) -> None:
    resolver = CredentialResolver({"TOKEN": "tok-123456789"})
    token = resolver.resolve("env:TOKEN").reveal()
    message = redact(f"request failed with token {token} to postgresql://u:other-pw@h/db")
    assert "tok-123456789" not in message and "other-pw" not in message
    logging.getLogger("test").warning(redact(f"auth {token}"))
    assert "tok-123456789" not in caplog.text


@pytest.fixture
def secrets(aws_env: str) -> boto3.client:
    return boto3.client("secretsmanager", region_name="us-east-1")


def test_aws_secret_whole_string_and_json_key(secrets) -> None:
    secrets.create_secret(Name="bm/prod/db", SecretString="postgresql://ro:aws-pw@db/prod")
    secrets.create_secret(
        Name="sis/lincoln",
        SecretString=json.dumps({"client_id": "abc", "client_secret": "shh-secret", "port": 5432}),
    )
    resolver = CredentialResolver()
    assert (
        resolver.resolve("aws-secretsmanager:bm/prod/db").reveal()
        == "postgresql://ro:aws-pw@db/prod"
    )
    assert resolver.resolve("aws-secretsmanager:sis/lincoln#client_secret").reveal() == "shh-secret"
    assert resolver.resolve("aws-secretsmanager:sis/lincoln#port").reveal() == "5432"
    assert "shh-secret" not in repr(
        resolver.resolve("aws-secretsmanager:sis/lincoln#client_secret")
    )


def test_aws_secret_is_cached_for_the_run(secrets) -> None:
    secrets.create_secret(Name="cached/one", SecretString=json.dumps({"a": "first-value"}))
    resolver = CredentialResolver()
    assert resolver.resolve("aws-secretsmanager:cached/one#a").reveal() == "first-value"
    secrets.delete_secret(SecretId="cached/one", ForceDeleteWithoutRecovery=True)
    # the same run keeps its value (and a second key of the same secret needs no new call)
    assert resolver.resolve("aws-secretsmanager:cached/one#a").reveal() == "first-value"
    with pytest.raises(CredentialError, match="ResourceNotFoundException"):
        CredentialResolver().resolve("aws-secretsmanager:cached/one#a")


def test_aws_errors_are_clear(secrets) -> None:
    secrets.create_secret(Name="plain", SecretString="not-json")
    resolver = CredentialResolver()
    with pytest.raises(CredentialError, match="ResourceNotFoundException"):
        resolver.resolve("aws-secretsmanager:does/not/exist")
    with pytest.raises(CredentialError, match="the secret is not JSON"):
        resolver.resolve("aws-secretsmanager:plain#key")
    secrets.create_secret(Name="json", SecretString='{"a": "b"}')
    with pytest.raises(CredentialError, match="has no key 'zzz'"):
        resolver.resolve("aws-secretsmanager:json#zzz")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u@db/x?password=pw-1", "postgresql://u@db/x?password=****"),
        (
            "postgresql://db/x?sslmode=require&PassWord=pw-1&application_name=recon",
            "postgresql://db/x?sslmode=require&PassWord=****&application_name=recon",
        ),
        (
            "https://h/a?api_key=k1&apikey=k2&key=k3&token=t&secret=s&pwd=p&passwd=q",
            "https://h/a?api_key=****&apikey=****&key=****&token=****&secret=****&pwd=****"
            "&passwd=****",
        ),
        (
            "https://h/a?access_token=t&client_secret=c&sslpassword=s#x",
            "https://h/a?access_token=****&client_secret=****&sslpassword=****#x",
        ),
        ("https://h/cb#access_token=t&state=1", "https://h/cb#access_token=****&state=1"),
        ("https://h/a?%70assword=pw-1", "https://h/a?%70assword=****"),
        ("postgresql://app:pw-1@db:5432/x", "postgresql://app:****@db:5432/x"),
        ("postgresql://app:p@ss/w0rd@db/x?x=a@b", "postgresql://app:****@db/x?x=a@b"),
        ("postgresql://app:p?ss#w0rd@db/x", "postgresql://app:****@db/x"),
        ("https://h:8443/a?email=a@b.example", "https://h:8443/a?email=a@b.example"),
        ("sftp://drop@sftp.example:22/out?tokens=1", "sftp://drop@sftp.example:22/out?tokens=1"),
        ("https://h/a?password=", "https://h/a?password="),
        ("/no/url?password=pw-1", "/no/url?password=pw-1"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert mask_url(masked) == masked


def test_redact_masks_every_url_in_a_text_even_values_never_resolved() -> None:
    """A URL read from the environment or repeated by a driver's error message holds
    secrets this process never resolved through a reference."""
    text = (
        "(psycopg2.OperationalError) connection to 'postgresql://ro@db.example/bm?"
        "sslmode=require&password=never-resolved-1' failed; retried "
        "https://api.example/v1/users?limit=5&access_token=never-resolved-2, "
        "then (ftp://drop:never-resolved-3@ftp.example/out)."
    )
    assert redact(text) == (
        "(psycopg2.OperationalError) connection to 'postgresql://ro@db.example/bm?"
        "sslmode=require&password=****' failed; retried "
        "https://api.example/v1/users?limit=5&access_token=****, "
        "then (ftp://drop:****@ftp.example/out)."
    )


def test_a_reference_ends_at_the_end_of_the_string() -> None:
    assert is_reference("env:DB_URL")
    assert not is_reference("env:DB_URL\n")
    assert not is_reference("aws-secretsmanager:bm/db#url\n")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("failed: 'postgresql://u:pa'ss@h/db'", "failed: 'postgresql://u:****@h/db'"),
        ("{'url': 'https://h/a?token=t0k3n'}", "{'url': 'https://h/a?token=****'}"),
        ("see <https://h/a?key=abc>.", "see <https://h/a?key=****>."),
        ("no URL here: password=abc", "no URL here: password=abc"),
    ],
)
def test_redact_finds_urls_among_quotes_and_brackets(text: str, shown: str) -> None:
    assert redact(text) == shown
