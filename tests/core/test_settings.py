"""Typed settings: defaults, validation messages that name the variable, .env handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.events import Platform, Quality, Size
from core.settings import SPECS, load_settings


def test_defaults_match_the_contract() -> None:
    s = load_settings({}, dotenv=None)
    assert s.data_dir == Path("./data") and s.daily_credits == 10
    assert s.image_model == "gpt-image-2" and s.image_api == "responses"
    assert s.telegram_api_url == "https://api.telegram.org"
    assert s.discord_api_url == "https://discord.com/api/v10"
    assert s.discord_gateway_url is None and s.http_port is None
    assert s.cost(Size.SQUARE, Quality.MEDIUM) == 1
    assert {spec.env for spec in SPECS} >= {
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "DISCORD_TOKEN",
        "TELEGRAM_TOKEN",
        "EASEL_DATA_DIR",
        "EASEL_DAILY_CREDITS",
        "EASEL_OPERATORS",
        "EASEL_IMAGE_MODEL",
        "EASEL_IMAGE_API",
        "EASEL_TELEGRAM_API_URL",
        "EASEL_DISCORD_API_URL",
        "EASEL_DISCORD_GATEWAY_URL",
        "EASEL_HTTP_PORT",
    }


def test_values_are_parsed() -> None:
    s = load_settings(
        {
            "EASEL_OPERATORS": "telegram:123, discord:456",
            "EASEL_HTTP_PORT": "8080",
            "EASEL_CREDIT_COSTS": "landscape/high=9",
            "EASEL_TELEGRAM_API_URL": "http://127.0.0.1:81/",
            "EASEL_DISCORD_GATEWAY_URL": "ws://127.0.0.1:82/gw",
            "EASEL_IMAGE_API": "images",
        },
        dotenv=None,
    )
    assert s.is_operator(Platform.TELEGRAM, "123") and s.is_operator(Platform.DISCORD, "456")
    assert not s.is_operator(Platform.DISCORD, "123")
    assert s.http_port == 8080 and s.cost(Size.LANDSCAPE, Quality.HIGH) == 9
    assert s.telegram_api_url == "http://127.0.0.1:81" and s.image_api == "images"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EASEL_DAILY_CREDITS", "-1"),
        ("EASEL_DAILY_CREDITS", "ten"),
        ("EASEL_IMAGE_API", "dalle"),
        ("EASEL_OPERATORS", "telegram:abc"),
        ("EASEL_OPERATORS", "irc:1"),
        ("EASEL_HTTP_PORT", "70000"),
        ("EASEL_TELEGRAM_API_URL", "ftp://x"),
        ("EASEL_DISCORD_GATEWAY_URL", "http://x"),
        ("EASEL_CREDIT_COSTS", "huge/high=3"),
        ("EASEL_TELEGRAM_WEBHOOK_SECRET", "has spaces"),
        ("EASEL_LOG_FORMAT", "xml"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value}, dotenv=None)


def test_webhook_needs_secret_and_port() -> None:
    with pytest.raises(ConfigError, match="EASEL_TELEGRAM_WEBHOOK_SECRET"):
        load_settings({"EASEL_TELEGRAM_WEBHOOK_URL": "https://x/hook"}, dotenv=None)
    with pytest.raises(ConfigError, match="EASEL_HTTP_PORT"):
        load_settings(
            {"EASEL_TELEGRAM_WEBHOOK_URL": "https://x/hook", "EASEL_TELEGRAM_WEBHOOK_SECRET": "abc"}, dotenv=None
        )


def test_dotenv_read_and_environment_wins(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('# comment\nexport OPENAI_API_KEY="sk-dotenv"\nEASEL_DAILY_CREDITS=3 # three\nEASEL_HTTP_PORT=9\n')
    s = load_settings({"EASEL_HTTP_PORT": "10"}, dotenv=env)
    assert s.openai_api_key == "sk-dotenv" and s.daily_credits == 3 and s.http_port == 10


def test_secrets_are_not_in_repr() -> None:
    s = load_settings({"OPENAI_API_KEY": "sk-secret-123", "TELEGRAM_TOKEN": "1:tok"}, dotenv=None)
    assert "sk-secret-123" not in repr(s) and "1:tok" not in repr(s)
    assert set(s.secrets()) == {"sk-secret-123", "1:tok"}


def test_invalid_secret_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"EASEL_TELEGRAM_WEBHOOK_SECRET": "sup3r secret!"}, dotenv=None)
    assert "sup3r" not in str(caught.value) and "EASEL_TELEGRAM_WEBHOOK_SECRET" in str(caught.value)
