"""`finserve auth keys create | list | revoke` on a real keys file, checked by the serving side's KeyStore."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from finserve.commands import auth as auth_command
from finserve.serving.access.keys import KeyStore, parse_key
from finserve.serving.errors import Unauthorized


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    auth_command.register(app)
    return app


def run(app, *args: str):
    return CliRunner().invoke(app, ["auth", "keys", *args])


def test_create_prints_the_key_once_and_the_server_accepts_it(app, tmp_path: Path):
    path = tmp_path / "keys.json"
    made = run(
        app,
        "create",
        "--name",
        "retail-app",
        "--tenant",
        "retail",
        "--tenant",
        "business",
        "--scope",
        "infer",
        "--scope",
        "adapter:override",
        "--keys-file",
        str(path),
    )
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[-1]
    kid, secret = parse_key(key)
    assert secret not in path.read_text()
    principal = KeyStore(path).verify(key)
    assert principal.id == f"key:{kid}" and set(principal.tenants) == {"retail", "business"}
    assert principal.scopes == {"infer", "adapter:override"}

    listed = run(app, "list", "--keys-file", str(path))
    assert listed.exit_code == 0 and kid in listed.stdout and "retail-app" in listed.stdout
    assert secret not in listed.stdout and "active" in listed.stdout

    revoked = run(app, "revoke", key, "--keys-file", str(path))  # a pasted key names its id
    assert revoked.exit_code == 0 and secret not in revoked.output
    with pytest.raises(Unauthorized, match="revoked"):
        KeyStore(path).verify(key)
    assert "revoked" in run(app, "list", "--keys-file", str(path)).stdout


def test_defaults_to_scope_infer_and_refuses_bad_input(app, tmp_path: Path):
    path = tmp_path / "keys.json"
    made = run(app, "create", "--name", "a", "--tenant", "retail", "--keys-file", str(path))
    assert KeyStore(path).verify(made.stdout.strip().splitlines()[-1]).scopes == {"infer"}
    bad = run(app, "create", "--name", "a", "--tenant", "retail", "--scope", "root", "--keys-file", str(path))
    assert bad.exit_code == 2 and "scope 'root'" in bad.output
    missing = run(app, "revoke", "000000000000", "--keys-file", str(path))
    assert missing.exit_code == 1 and "no key 000000000000" in missing.output


def test_default_keys_file_is_under_the_data_dir(app, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FINSERVE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("FINSERVE_KEYS_FILE", raising=False)
    monkeypatch.delenv("FINSERVE_CONFIG", raising=False)
    assert run(app, "create", "--name", "a", "--tenant", "retail").exit_code == 0
    assert (tmp_path / "auth" / "keys.json").exists()
