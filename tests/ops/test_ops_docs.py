"""The operator's documents agree with the code: every setting documented (and nothing that is not one),
the README's test command is the one CI runs, the deploy files' timeouts outlast the shutdown grace."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bots.process.config import all_declarations, load_settings
from core.config import Declaration, read_dotenv
from core.metrics import Metrics
from core.spec import DEFAULT_COSTS, FLEXIBLE_SIZES, Quality, Shape

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
ENV_EXAMPLE = (REPO / "deploy" / "env.example").read_text(encoding="utf-8")
CI_RUN = REPO / ".ci" / "run"
SPECS = all_declarations()
NAMES = {spec.env for spec in SPECS}
HINT = "run `python deploy/gendocs.py` after changing a setting's declaration"
# Assignments in env.example, commented out or not: `NAME=value` or `# NAME=value`.
ASSIGNMENT = re.compile(r"^(?:#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", re.MULTILINE)


def _env_example_values() -> dict[str, str]:
    return {name: value for name, value in ASSIGNMENT.findall(ENV_EXAMPLE)}


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.env)
def test_env_example_has_every_setting_with_its_default(spec: Declaration) -> None:
    values = _env_example_values()
    assert spec.env in values, f"{spec.env} is missing from deploy/env.example; {HINT}"
    if spec.default:
        assert values[spec.env] == spec.default, f"{spec.env}: env.example shows another default; {HINT}"
    assert spec.doc in ENV_EXAMPLE, f"{spec.env}: its description in env.example is stale; {HINT}"


def test_env_example_names_only_real_settings() -> None:
    unknown = set(_env_example_values()) - NAMES
    assert not unknown, f"deploy/env.example sets names that no code reads: {sorted(unknown)}"
    mentioned = set(re.findall(r"\bEASEL_[A-Z0-9_]+", ENV_EXAMPLE))
    assert mentioned <= NAMES, sorted(mentioned - NAMES)


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.env)
def test_readme_documents_every_setting(spec: Declaration) -> None:
    rows = [line for line in README.splitlines() if line.startswith(f"| `{spec.env}` |")]
    assert len(rows) == 1, f"{spec.env} needs one row in the README's configuration table; {HINT}"
    cells = [cell.strip() for cell in rows[0].strip("|").split(" | ")]
    assert cells[1] == (f"`{spec.default}`" if spec.default else "unset"), f"{spec.env}: stale default; {HINT}"


def test_readme_mentions_only_real_settings() -> None:
    mentioned = set(re.findall(r"\bEASEL_[A-Z0-9_]+", README))
    assert mentioned <= NAMES, f"the README mentions settings that do not exist: {sorted(mentioned - NAMES)}"


def test_env_example_defaults_are_all_valid_settings(tmp_path: Path) -> None:
    """Uncommenting any line of env.example as shipped must not break start-up."""
    dotenv = tmp_path / ".env"
    dotenv.write_text(re.sub(r"^#\s*([A-Z][A-Z0-9_]*=)", r"\1", ENV_EXAMPLE, flags=re.MULTILINE))
    values = read_dotenv(dotenv)
    assert set(values) == NAMES
    settings = load_settings({"OPENAI_API_KEY": "sk-test", "TELEGRAM_TOKEN": "1:x"}, dotenv=dotenv)
    assert settings == load_settings({"OPENAI_API_KEY": "sk-test", "TELEGRAM_TOKEN": "1:x"}, dotenv=None)
    assert settings.daily_credits == 10


def test_readme_lists_every_metric() -> None:
    for family in Metrics().registry.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        assert f"`{name}`" in README, f"metric {name} is not documented in the README's Operations section"


def _readme_test_command() -> str:
    fenced = re.findall(r"```[a-z]*\n(.*?)```", README, flags=re.DOTALL)
    commands = [line for block in fenced for line in block.splitlines() if "&& pytest" in line]
    assert len(commands) == 1, "the README must give the test command exactly once, in a fenced block"
    return str(commands[0])


def test_ci_runs_exactly_the_readme_test_command() -> None:
    command = _readme_test_command()
    assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[dev]'")
    assert command.endswith("ruff check . && mypy && pytest")
    script = CI_RUN.read_text(encoding="utf-8")
    assert script.splitlines().count(command) == 1
    assert "set -euo pipefail" in script
    assert os.access(CI_RUN, os.X_OK), ".ci/run must be executable"


def test_quick_start_comes_first_with_the_run_command() -> None:
    sections = re.findall(r"^## (.+)$", README, flags=re.MULTILINE)
    assert sections[0] == "Quick start"
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "pip install -e . && OPENAI_API_KEY=sk-... TELEGRAM_TOKEN=... easel run" in quick
    assert "easel console" in quick


def test_readme_says_message_content_intent_is_privileged() -> None:
    discord = README.split("## Discord setup", 1)[1].split("\n## ", 1)[0]
    assert "Message Content" in discord and "privileged" in discord


def test_supervisors_outlast_the_shutdown_grace_and_do_not_restart_fatal_exits() -> None:
    from bots.process.runner import EX_CONFIG

    grace = float(next(spec.default for spec in SPECS if spec.env == "EASEL_SHUTDOWN_GRACE"))
    compose = (REPO / "deploy" / "compose.yaml").read_text(encoding="utf-8")
    unit = (REPO / "deploy" / "easel.service").read_text(encoding="utf-8")
    compose_grace = re.search(r"^\s*stop_grace_period:\s*(\d+)s\s*$", compose, re.MULTILINE)
    unit_timeout = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE)
    assert compose_grace and float(compose_grace.group(1)) > grace
    assert unit_timeout and float(unit_timeout.group(1)) > grace
    assert re.search(rf"^RestartPreventExitStatus={EX_CONFIG}$", unit, re.MULTILINE)
    assert re.search(r"^Restart=on-failure$", unit, re.MULTILINE)
    assert re.search(r"^StartLimitBurst=\d+$", unit, re.MULTILINE)


def test_dockerfile_runs_unprivileged_with_a_data_volume_and_healthcheck() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r"^VOLUME /data$", dockerfile, re.MULTILINE)
    assert "/healthz" in dockerfile.split("HEALTHCHECK", 1)[1].split("\n\n", 1)[0]
    assert 'CMD ["easel", "run"]' in dockerfile


def test_readme_credit_table_matches_the_defaults() -> None:
    """Every shape the README's credit table lists matches core.spec (the classic three at least)."""
    listed = []
    for shape in Shape:
        rows = [line for line in README.splitlines() if line.startswith(f"| `{shape.value}` (")]
        assert len(rows) <= 1, f"the README's credit table has two rows for {shape.value}"
        if not rows:
            continue
        listed.append(shape)
        assert f"({FLEXIBLE_SIZES[shape].replace('x', '×')})" in rows[0]
        cells = [cell.strip() for cell in rows[0].strip().strip("|").split("|")][1:]
        expected = [str(DEFAULT_COSTS[(shape, quality)]) for quality in (Quality.LOW, Quality.MEDIUM, Quality.HIGH)]
        assert cells == expected, f"README credit table for {shape.value} differs from core.spec.DEFAULT_COSTS"
    assert {Shape.SQUARE, Shape.PORTRAIT, Shape.LANDSCAPE} <= set(listed)


def test_the_backup_timer_writes_dated_files_and_keeps_them_private() -> None:
    service = (REPO / "deploy" / "easel-backup.service").read_text(encoding="utf-8")
    timer = (REPO / "deploy" / "easel-backup.timer").read_text(encoding="utf-8")
    start = re.search(r"^ExecStart=\S+/easel db backup (\S+)$", service, re.MULTILINE)
    assert start and start.group(1).endswith("/"), "the timer backs up into a directory: dated file names"
    assert re.search(r"^StateDirectoryMode=0700$", service, re.MULTILINE)
    assert re.search(r"^UMask=0077$", service, re.MULTILINE)
    assert "-name easel-*.db" in service  # pruning touches only Easel's dated backups
    assert re.search(r"^OnCalendar=\S+$", timer, re.MULTILINE) and "Persistent=true" in timer


def test_build_output_is_ignored_by_git() -> None:
    ignored = (REPO / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "build/" in ignored
