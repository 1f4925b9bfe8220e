from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.errors import SettingsError
from controlplane.settings import Settings, load_settings, redact_url


def test_embedded_default_keeps_everything_under_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    home = (tmp_path / ".mlcp").resolve()
    assert s.home == home
    assert s.database_url == f"sqlite:///{home / 'controlplane.db'}"
    assert s.mlflow_tracking_uri == f"sqlite:///{home / 'mlflow.db'}"
    assert s.mlflow_registry_uri == s.mlflow_tracking_uri
    assert s.artifact_root == (home / "artifacts").as_uri()


def test_environment_overrides(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLCP_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("MLCP_DATABASE_URL", "postgresql://cp@db:5432/mlcp")
    monkeypatch.setenv("MLCP_ACTOR", "ci-bot")
    s = load_settings()
    assert s.home == (tmp_path / "h").resolve()
    assert s.database_url == "postgresql+psycopg://cp@db:5432/mlcp"
    assert s.actor == "ci-bot"


def test_toml_file_is_read_and_environment_wins(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlcp.toml").write_text('actor = "from-toml"\nhome = "store"\n')
    assert load_settings().actor == "from-toml"
    assert load_settings().home == (tmp_path / "store").resolve()
    monkeypatch.setenv("MLCP_ACTOR", "from-env")
    assert load_settings().actor == "from-env"


@pytest.mark.parametrize(
    ("var", "value", "hint"),
    [
        ("MLCP_DATABASE_URL", "mysql://x@y/z", "postgresql://"),
        ("MLCP_DATABASE_URL", "not a url", "sqlite:///"),
        ("MLCP_MLFLOW_TRACKING_URI", "ftp://x", "unsupported MLflow URI"),
        ("MLCP_DB_CONNECT_TIMEOUT_S", "-1", "greater than 0"),
    ],
)
def test_bad_setting_names_the_variable(monkeypatch, var: str, value: str, hint: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert err.value.variable == var
    assert str(err.value).startswith(f"{var}: ")
    assert hint in str(err.value)


def test_unknown_toml_key_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlcp.toml").write_text('databse_url = "sqlite:///x.db"\n')
    with pytest.raises(SettingsError, match="MLCP_DATABSE_URL"):
        load_settings()


def test_malformed_toml_is_reported(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlcp.toml").write_text("actor = \n")
    with pytest.raises(SettingsError, match=r"mlcp\.toml"):
        load_settings()


def test_passwords_are_redacted() -> None:
    assert redact_url("postgresql+psycopg://u:s3cret@h/db") == "postgresql+psycopg://u:***@h/db"
    s = Settings(database_url="postgresql://u:s3cret@h/db")
    assert "s3cret" not in str(s.redacted())


def test_remote_mode_needs_the_url_and_the_token_and_masks_the_token(monkeypatch) -> None:
    monkeypatch.setenv("MLCP_API_URL", "https://mlcp.internal:8080/")
    with pytest.raises(SettingsError, match=r"^MLCP_TOKEN: .*mlcp tokens create") as missing:
        load_settings()
    assert missing.value.variable == "MLCP_TOKEN"
    monkeypatch.setenv("MLCP_TOKEN", "mlcp_secret")
    s = load_settings()
    assert (s.remote, s.api_url) == (True, "https://mlcp.internal:8080")
    assert "mlcp_secret" not in str(s.redacted())
    monkeypatch.delenv("MLCP_API_URL")
    with pytest.raises(SettingsError, match=r"^MLCP_API_URL: "):
        load_settings()


def test_api_url_must_be_http(monkeypatch) -> None:
    monkeypatch.setenv("MLCP_API_URL", "ftp://mlcp")
    monkeypatch.setenv("MLCP_TOKEN", "mlcp_x")
    with pytest.raises(SettingsError, match="MLCP_API_URL: 'ftp://mlcp' is not an http"):
        load_settings()


def test_the_cache_redis_url_takes_only_redis(monkeypatch) -> None:
    assert load_settings().cache_redis_url == ""
    monkeypatch.setenv("MLCP_CACHE_REDIS_URL", "redis://:pw@cache:6379/2")
    assert load_settings().cache_redis_url == "redis://:pw@cache:6379/2"
    assert load_settings().redacted()["cache_redis_url"] == "redis://:***@cache:6379/2"
    monkeypatch.setenv("MLCP_CACHE_REDIS_URL", "memcached://cache")
    with pytest.raises(SettingsError, match="MLCP_CACHE_REDIS_URL") as caught:
        load_settings()
    assert "redis://" in str(caught.value)


def test_feature_generations_take_the_database_or_redis(monkeypatch) -> None:
    assert load_settings().feature_generations == "database"
    monkeypatch.setenv("MLCP_FEATURE_GENERATIONS", "redis://:pw@cache:6379/0")
    assert load_settings().feature_generations == "redis://:pw@cache:6379/0"
    monkeypatch.setenv("MLCP_FEATURE_GENERATIONS", "memcached://cache")
    with pytest.raises(SettingsError, match="MLCP_FEATURE_GENERATIONS") as caught:
        load_settings()
    assert "redis://host:port" in str(caught.value)
