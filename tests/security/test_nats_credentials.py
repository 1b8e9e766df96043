"""A service's NATS credentials: taken from NATS_USER/NATS_PASSWORD, used by every
connection it opens, refused clearly when incomplete, and never written to its logs,
not even when the broker turns them away."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jggl_common.e2e import APP_KEY
from jggl_common.settings import ConfigurationError, ServiceSettings, load_settings
from jggl_common.testing import NATS_AUTH_CONFIG, start_nats_server
from jggl_sandbox.nats_credentials import NatsCredential

BASE = {"APP_KEY": APP_KEY, "NATS_URL": "nats://127.0.0.1:4222", "APP_URL": "http://localhost:8000"}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NATS_USER", "NATS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in BASE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(Path(__file__).parent)  # no .env of the checkout


def test_the_credentials_go_into_every_connection_of_the_service(
    environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NATS_USER", "ingest")
    monkeypatch.setenv("NATS_PASSWORD", "p0123abcdef")
    settings = load_settings(ServiceSettings)
    assert settings.nats_url == "nats://ingest:p0123abcdef@127.0.0.1:4222"
    assert "p0123abcdef" not in repr(settings.nats_password)
    # Settings built again from their own values keep one set of credentials.
    assert ServiceSettings(**settings.model_dump()).nats_url == settings.nats_url


def test_without_a_user_the_url_is_left_as_it_is(environment: None) -> None:
    assert load_settings(ServiceSettings).nats_url == BASE["NATS_URL"]


def test_a_user_without_a_password_stops_the_service_with_one_line(
    environment: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NATS_USER", "crm")
    with pytest.raises(ConfigurationError):
        load_settings(ServiceSettings)
    assert "NATS_PASSWORD is missing" in capsys.readouterr().err


def test_a_password_that_cannot_stand_in_a_url_is_refused(
    environment: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NATS_USER", "crm")
    monkeypatch.setenv("NATS_PASSWORD", "pa:ss@word/1")
    with pytest.raises(ConfigurationError):
        load_settings(ServiceSettings)
    err = capsys.readouterr().err
    assert "NATS_PASSWORD may hold only letters, digits" in err
    assert "pa:ss@word/1" not in err


@pytest.mark.timeout(120)
def test_refused_credentials_are_reported_without_the_password(
    tmp_path: Path, nats_credentials: dict[str, NatsCredential]
) -> None:
    hashes = {user: credential.bcrypt_hash for user, credential in nats_credentials.items()}
    nats, port = start_nats_server(tmp_path / "js", config=NATS_AUTH_CONFIG, password_hashes=hashes)
    wrong = "pWrongPassword4711"
    env = {
        **os.environ,
        **BASE,
        "NATS_URL": f"nats://127.0.0.1:{port}",
        "NATS_USER": "ingest",
        "NATS_PASSWORD": wrong,
        "REDIS_URL": "redis://127.0.0.1:6379/15",
        "PORT": "0",
        "LOG_LEVEL": "INFO",
    }
    log = tmp_path / "ingest.log"
    with log.open("wb") as out:
        service = subprocess.Popen([sys.executable, "-m", "ingest"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while "violation" not in log.read_text(errors="replace").lower() and time.monotonic() < deadline:
            assert service.poll() is None, log.read_text(errors="replace")[-2000:]
            time.sleep(0.5)
    finally:
        service.terminate()
        service.wait(30)
        nats.terminate()
        nats.wait(10)
    output = log.read_text(errors="replace")
    assert "authorization violation" in output.lower(), output[-2000:]
    assert wrong not in output
