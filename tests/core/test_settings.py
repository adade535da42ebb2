"""Typed settings: each declared once, defaults, validation messages that name the variable and list what it
accepts, unknown names warned about, secrets never echoed, .env handling."""

from __future__ import annotations

import logging
from dataclasses import fields
from pathlib import Path

import pytest

from bots.discord.config import Shards
from bots.process.config import SECTIONS, Settings, all_declarations, check_tokens, load_settings
from core.config import LANGUAGES, declarations, declared_fields
from core.errors import ConfigError
from core.events import Platform, Quality
from core.settings import CoreSettings
from core.spec import DEFAULT_COSTS, Shape
from core.spec import Quality as SpecQuality
from core.texts.catalog import languages

CONTRACT = {  # DESIGN section 3: name -> default as documented ("" = unset)
    "OPENAI_API_KEY": "",
    "OPENAI_BASE_URL": "",
    "DISCORD_TOKEN": "",
    "TELEGRAM_TOKEN": "",
    "EASEL_DATA_DIR": "./data",
    "EASEL_DAILY_CREDITS": "10",
    "EASEL_OPERATORS": "",
    "EASEL_IMAGE_MODEL": "gpt-image-2",
    "EASEL_IMAGE_API": "responses",
    "EASEL_TELEGRAM_API_URL": "https://api.telegram.org",
    "EASEL_DISCORD_API_URL": "https://discord.com/api/v10",
    "EASEL_DISCORD_GATEWAY_URL": "",
    "EASEL_HTTP_PORT": "",
    "EASEL_MAX_DAILY_CREDITS": "100",
    "EASEL_COMMUNITIES": "",
    "EASEL_DAILY_BUDGET_USD": "",
    "EASEL_DATABASE_URL": "",
    "EASEL_DISCORD_SHARDS": "",
    "EASEL_LANGUAGE": "en",
    "EASEL_ROUND_DEADLINE": "900",
}


def test_every_contract_variable_is_declared_once_with_its_default() -> None:
    declared = {d.env: d.default for d in all_declarations()}
    assert len(declared) == len(all_declarations()), "a variable is declared twice"
    assert {name: declared.get(name) for name in CONTRACT} == CONTRACT
    assert all(d.env.startswith("EASEL_") or d.env in CONTRACT for d in all_declarations())


def test_each_section_declares_its_own_and_the_core_names_no_platform() -> None:
    owners = {d.env: section.__name__ for section in SECTIONS for d in declarations(section)}
    assert owners["TELEGRAM_TOKEN"] == owners["EASEL_TELEGRAM_WEBHOOK_URL"] == "TelegramSettings"
    assert owners["DISCORD_TOKEN"] == owners["EASEL_DISCORD_SHARDS"] == "DiscordSettings"
    assert owners["EASEL_HTTP_PORT"] == owners["EASEL_LOG_LEVEL"] == "ProcessSettings"
    core_names = {d.env for d in declarations(CoreSettings)}
    assert not {n for n in core_names if "TELEGRAM" in n or "DISCORD" in n}
    source = (Path(__file__).resolve().parents[2] / "core" / "settings.py").read_text(encoding="utf-8").lower()
    assert "telegram_" not in source and "discord_" not in source  # examples of `telegram:123` values are fine


def test_every_declared_default_is_the_field_default() -> None:
    settings = Settings()
    for attr, declared in declared_fields(Settings):
        if declared.default:
            assert getattr(settings, attr) == declared.parse(declared.default), declared.env
    assert all(f.metadata for f in fields(Settings)), "a Settings field is not a declared setting"


def test_defaults_match_the_contract() -> None:
    s = load_settings({}, dotenv=None)
    assert s.data_dir == Path("./data") and s.daily_credits == 10 and s.max_daily_credits == 100
    assert s.image_model == "gpt-image-2" and s.image_api == "responses"
    assert s.telegram_api_url == "https://api.telegram.org"
    assert s.discord_api_url == "https://discord.com/api/v10"
    assert s.discord_gateway_url is None and s.http_port is None and s.discord_shards is None
    assert s.communities is None and s.daily_budget_usd is None and s.database_url is None
    assert s.language == "en" and s.round_deadline == 900 and s.background_mode is True
    assert s.transparent_model is None and s.user_rate >= 1 and s.provider_call_timeout < s.round_deadline
    assert s.shutdown_grace + 3 <= 10, "the whole SIGTERM stop must fit in Docker's 10 s"
    assert s.worker_id and s.worker_id.endswith(f"-{__import__('os').getpid()}")
    assert s.cost_table[(Shape.SQUARE, Quality.MEDIUM)] == 1
    assert s.cost_table == DEFAULT_COSTS and len(s.cost_table) == len(Shape) * len(SpecQuality)
    assert s.serves(Platform.TELEGRAM, "-1")


def test_languages_are_the_catalogs() -> None:
    assert set(LANGUAGES) == set(languages())


def test_values_are_parsed() -> None:
    s = load_settings(
        {
            "EASEL_OPERATORS": "telegram:123, discord:456",
            "EASEL_COMMUNITIES": "telegram:-100123,discord:456",
            "EASEL_HTTP_PORT": "8080",
            "EASEL_CREDIT_COSTS": "landscape/high=9,wide/low=3",
            "EASEL_TELEGRAM_API_URL": "http://127.0.0.1:81/",
            "EASEL_DISCORD_GATEWAY_URL": "ws://127.0.0.1:82/gw",
            "EASEL_DISCORD_SHARDS": "1,0/4",
            "EASEL_IMAGE_API": "images",
            "EASEL_DAILY_BUDGET_USD": "12.5",
            "EASEL_DATABASE_URL": "postgresql://easel:pw@db/easel",
            "EASEL_LANGUAGE": "zh",
            "EASEL_BACKGROUND_MODE": "off",
            "EASEL_WORKER_ID": "worker-a",
            "EASEL_LOG_LEVEL": "debug",
        },
        dotenv=None,
    )
    assert s.is_operator(Platform.TELEGRAM, "123") and s.is_operator(Platform.DISCORD, "456")
    assert not s.is_operator(Platform.DISCORD, "123")
    assert s.communities == frozenset({(Platform.TELEGRAM, "-100123"), (Platform.DISCORD, "456")})
    assert s.serves(Platform.DISCORD, "456") and not s.serves(Platform.DISCORD, "457")
    assert s.http_port == 8080 and s.cost_table[(Shape.LANDSCAPE, Quality.HIGH)] == 9
    assert s.cost_table[(Shape.WIDE, SpecQuality.LOW)] == 3
    assert s.telegram_api_url == "http://127.0.0.1:81" and s.image_api == "images"
    assert s.discord_shards == Shards((0, 1), 4) and str(s.discord_shards) == "0,1/4"
    assert s.daily_budget_usd == 12.5 and s.language == "zh" and s.background_mode is False
    assert s.database_url == "postgresql://easel:pw@db/easel" and s.worker_id == "worker-a"
    assert s.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("EASEL_DAILY_CREDITS", "-1", "from 0 to"),
        ("EASEL_DAILY_CREDITS", "ten", "whole number"),
        ("EASEL_MAX_DAILY_CREDITS", "1.5", "whole number"),
        ("EASEL_IMAGE_API", "dalle", "EASEL_IMAGE_API must be one of: responses, images"),
        ("EASEL_LANGUAGE", "fr", "EASEL_LANGUAGE must be one of: en, zh"),
        ("EASEL_LOG_FORMAT", "xml", "must be one of: text, json"),
        ("EASEL_BACKGROUND_MODE", "maybe", "must be one of: on, off"),
        ("EASEL_OPERATORS", "telegram:abc", "'telegram:abc'"),
        ("EASEL_OPERATORS", "irc:1", "'irc:1'"),
        ("EASEL_OPERATORS", "telegram:１２３", "'telegram:１２３'"),  # full-width digits: str.isdigit says yes
        ("EASEL_OPERATORS", "telegram:123,discord", "'discord'"),
        ("EASEL_OPERATORS", "telegram:-5", "'telegram:-5'"),
        ("EASEL_COMMUNITIES", "telegram:-100x", "'telegram:-100x'"),
        ("EASEL_HTTP_PORT", "70000", "from 0 to 65535"),
        ("EASEL_TELEGRAM_API_URL", "ftp://x", "http://"),
        ("EASEL_DISCORD_GATEWAY_URL", "http://x", "ws://"),
        ("EASEL_CREDIT_COSTS", "huge/high=3", "square, portrait, landscape, wide, tall"),
        ("EASEL_CREDIT_COSTS", "wide/ultra=3", "low, medium, high"),
        ("EASEL_CREDIT_COSTS", "wide/high=-1", "0 or more"),
        ("EASEL_PRICES", "gold=1", "text_in, image_in, image_out"),
        ("EASEL_DAILY_BUDGET_USD", "-1", "from 0"),
        ("EASEL_DAILY_BUDGET_USD", "nan", "number"),
        ("EASEL_DISCORD_SHARDS", "4/4", "ids / total"),
        ("EASEL_DISCORD_SHARDS", "0,1", "ids / total"),
        ("EASEL_DISCORD_SHARDS", "0/0", "ids / total"),
        ("EASEL_ROUND_DEADLINE", "0", "number from"),
        ("EASEL_WORKER_ID", "has space", "characters"),
        ("EASEL_DATABASE_URL", "mysql://x", "postgresql://"),
    ],
)
def test_bad_values_name_the_variable_and_what_it_accepts(name: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=name) as caught:
        load_settings({name: value}, dotenv=None)
    assert expected in str(caught.value)


def test_webhook_needs_secret_and_port() -> None:
    with pytest.raises(ConfigError, match="EASEL_TELEGRAM_WEBHOOK_SECRET"):
        load_settings({"EASEL_TELEGRAM_WEBHOOK_URL": "https://x/hook"}, dotenv=None)
    with pytest.raises(ConfigError, match="EASEL_HTTP_PORT"):
        load_settings(
            {"EASEL_TELEGRAM_WEBHOOK_URL": "https://x/hook", "EASEL_TELEGRAM_WEBHOOK_SECRET": "abc"}, dotenv=None
        )


def test_unknown_easel_variables_are_warned_about_with_the_nearest_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = tmp_path / ".env"
    env.write_text("EASEL_DAILY_CREDIT=5\nEASEL_ZZZ=1\nOTHER_THING=1\n")
    with caplog.at_level(logging.WARNING, logger="easel.settings"):
        s = load_settings({"EASEL_IMAGE_MODLE": "x"}, dotenv=env)
    assert s.daily_credits == 10  # not fatal
    text = caplog.text
    assert "EASEL_DAILY_CREDIT is not a setting" in text and "did you mean EASEL_DAILY_CREDITS?" in text
    assert "did you mean EASEL_IMAGE_MODEL?" in text
    assert "EASEL_ZZZ is not a setting" in text and "OTHER_THING" not in text
    assert "=5" not in text  # names only, never values


def test_dotenv_read_and_environment_wins(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('# comment\nexport OPENAI_API_KEY="sk-dotenv"\nEASEL_DAILY_CREDITS=3 # three\nEASEL_HTTP_PORT=9\n')
    s = load_settings({"EASEL_HTTP_PORT": "10"}, dotenv=env)
    assert s.openai_api_key == "sk-dotenv" and s.daily_credits == 3 and s.http_port == 10


def test_secrets_are_not_in_repr_and_are_all_listed() -> None:
    s = load_settings(
        {
            "OPENAI_API_KEY": "sk-secret-123",
            "TELEGRAM_TOKEN": "1:tok",
            "DISCORD_TOKEN": "a.b.c",
            "EASEL_TELEGRAM_WEBHOOK_SECRET": "hook-secret",
            "EASEL_DATABASE_URL": "postgresql://easel:db-pass@db/easel",
            "OPENAI_BASE_URL": "https://proxy-user:proxy-pass@proxy.example/v1?api-key=query-key&v=2",
        },
        dotenv=None,
    )
    shown = repr(s)
    for secret in ("sk-secret-123", "1:tok", "a.b.c", "hook-secret", "db-pass"):
        assert secret not in shown
    assert set(s.secrets()) >= {
        "sk-secret-123", "1:tok", "a.b.c", "hook-secret", "postgresql://easel:db-pass@db/easel",
        "db-pass", "proxy-user", "proxy-pass", "query-key",
    }
    assert "2" not in s.secrets()  # an ordinary query parameter is not a secret


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EASEL_TELEGRAM_WEBHOOK_SECRET", "sup3r secret!"),
        ("EASEL_DATABASE_URL", "mysql://root:sup3r@db/x"),
    ],
)
def test_invalid_secret_is_not_echoed(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value}, dotenv=None)
    assert "sup3r" not in str(caught.value) and name in str(caught.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TELEGRAM_TOKEN": "not a token"}, "TELEGRAM_TOKEN does not look like a bot token"),
        ({"TELEGRAM_TOKEN": "bot123456:AAHk2Zb9xQ"}, "starts with 'bot'"),
        ({"DISCORD_TOKEN": "0123456789abcdef0123456789abcdef"}, "DISCORD_TOKEN does not look like a bot token"),
        ({"DISCORD_TOKEN": "Bot MTIz.GhT6pQ.x8Kd"}, "starts with 'Bot '"),
    ],
)
def test_tokens_of_the_wrong_shape_are_refused_without_echo(env: dict[str, str], expected: str) -> None:
    settings = load_settings(env, dotenv=None)  # the console needs no platform token: `easel run` checks
    with pytest.raises(ConfigError) as caught:
        check_tokens(settings)
    assert expected in str(caught.value)
    assert next(iter(env.values())) not in str(caught.value)


def test_tokens_of_the_right_shape_pass() -> None:
    check_tokens(
        load_settings(
            {
                "TELEGRAM_TOKEN": "7312450983:AAHk2Zb9xQ-3mLpR7vT_wYc4dNe8fGh1jKs",
                "DISCORD_TOKEN": "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GhT6pQ.x8Kd2Lm5Nq7Rs9Tu1Vw3Xy5Za7Bc9De1Fg",
            },
            dotenv=None,
        )
    )
    check_tokens(load_settings({}, dotenv=None))
