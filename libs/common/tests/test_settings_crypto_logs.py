"""Settings fail with one clear line; secrets round-trip and never leak; logs are JSON."""

from __future__ import annotations

import base64
import json
import os

import pytest

from jggl_common.crypto import DecryptionError, SecretBox, mask
from jggl_common.logs import configure_logging, get_logger, set_correlation_id
from jggl_common.settings import ConfigurationError, ServiceSettings, load_settings

KEY = base64.b64encode(b"k" * 32).decode()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name in {"APP_KEY", "NATS_URL", "APP_URL"}:
            monkeypatch.delenv(name)
    monkeypatch.chdir("/")  # no .env file in reach
    return monkeypatch


def test_missing_variable_is_named_in_one_line(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("APP_KEY", KEY)
    clean_env.setenv("APP_URL", "http://x")
    with pytest.raises(ConfigurationError) as info:
        load_settings(ServiceSettings)
    assert str(info.value) == "configuration error: NATS_URL is missing (required)"
    assert capsys.readouterr().err.strip() == "configuration error: NATS_URL is missing (required)"


@pytest.mark.parametrize(
    ("value", "reason"),
    [("not base64!", "must be base64"), (base64.b64encode(b"short").decode(), "must decode to 32 bytes, got 5")],
)
def test_invalid_app_key_says_why(clean_env: pytest.MonkeyPatch, value: str, reason: str) -> None:
    clean_env.setenv("APP_KEY", value)
    clean_env.setenv("APP_URL", "http://x")
    clean_env.setenv("NATS_URL", "nats://127.0.0.1:4222")
    with pytest.raises(ConfigurationError, match=f"APP_KEY is invalid: {reason}"):
        load_settings(ServiceSettings)


def test_stream_replicas_must_form_a_majority(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("APP_KEY", KEY)
    clean_env.setenv("APP_URL", "http://x")
    clean_env.setenv("NATS_URL", "nats://127.0.0.1:4222")
    clean_env.setenv("NATS_STREAM_REPLICAS", "2")
    with pytest.raises(ConfigurationError, match="NATS_STREAM_REPLICAS is invalid: must be 1, 3 or 5"):
        load_settings(ServiceSettings)
    clean_env.setenv("NATS_STREAM_REPLICAS", "3")
    assert load_settings(ServiceSettings).nats_stream_replicas == 3


def test_valid_environment_loads(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("APP_KEY", KEY)
    clean_env.setenv("APP_URL", "http://x")
    clean_env.setenv("NATS_URL", "nats://127.0.0.1:4222")
    assert load_settings(ServiceSettings).nats_url == "nats://127.0.0.1:4222"


def test_sealed_secret_round_trips_and_hides_the_plaintext() -> None:
    box = SecretBox(KEY)
    sealed = box.seal("EAAB-page-token-123")
    assert "page-token" not in sealed
    assert SecretBox.is_sealed(sealed)
    assert box.open(sealed) == "EAAB-page-token-123"
    assert box.seal("same") != box.seal("same")  # fresh nonce every time


def test_other_key_or_tampering_cannot_open() -> None:
    sealed = SecretBox(KEY).seal("secret")
    with pytest.raises(DecryptionError):
        SecretBox(base64.b64encode(b"z" * 32).decode()).open(sealed)
    with pytest.raises(DecryptionError):
        SecretBox(KEY, purpose="other").open(sealed)
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(DecryptionError):
        SecretBox(KEY).open(tampered)
    with pytest.raises(DecryptionError):
        SecretBox(KEY).open("plain text")


def test_mask_reveals_no_character() -> None:
    shown = mask("EAABsecrettoken9876")
    assert shown is not None
    assert shown.startswith("set · fp ")
    assert "9876" not in shown
    assert "EAAB" not in shown
    assert mask("") == ""
    assert mask(None) is None


def test_logs_are_json_lines_with_the_correlation_id(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("unit", "INFO")
    set_correlation_id("abc123")
    try:
        get_logger("t").info("webhook accepted", events=3)
    finally:
        set_correlation_id(None)
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["event"] == "webhook accepted"
    assert line["correlation_id"] == "abc123"
    assert line["service"] == "unit"
    assert line["events"] == 3
