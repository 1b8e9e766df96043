"""make run / make demo: crm's signing key reaches crm and nothing else."""

from __future__ import annotations

import base64
import importlib.util
import stat
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[4]


def _run_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jggl_run_script", ROOT / "scripts" / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_signing_key_is_made_once_kept_private_and_given_to_crm_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run_module()
    key_file = tmp_path / ".run" / "auth_signing_key"
    monkeypatch.setattr(run, "SIGNING_KEY_FILE", key_file)
    monkeypatch.setattr(run, "ROOT", tmp_path)
    env = {"APP_KEY": "app-key", "AUTH_SIGNING_KEY_PREVIOUS": "old-signing-key", "NATS_URL": "nats://x"}

    crm = run._env_for("crm", env)
    assert len(base64.b64decode(crm["AUTH_SIGNING_KEY"], validate=True)) == 32
    assert crm["AUTH_SIGNING_KEY_PREVIOUS"] == "old-signing-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # The same key on the next start: sessions survive a restart of make run.
    assert run._env_for("crm", env)["AUTH_SIGNING_KEY"] == crm["AUTH_SIGNING_KEY"]

    for service in ("ingest", "notifier", "ai", "scheduler", "graph-fake"):
        other = run._env_for(service, {**env, "AUTH_SIGNING_KEY": crm["AUTH_SIGNING_KEY"]})
        assert "AUTH_SIGNING_KEY" not in other
        assert "AUTH_SIGNING_KEY_PREVIOUS" not in other
        assert other["APP_KEY"] == "app-key"

    # A key set in the environment (or .env) wins over the file.
    configured = base64.b64encode(b"k" * 32).decode()
    assert run._env_for("crm", {**env, "AUTH_SIGNING_KEY": configured})["AUTH_SIGNING_KEY"] == configured
