"""Regenerate `deploy/env.example` and the README's configuration table from the settings' declarations
(core/settings.py, bots/telegram/config.py, bots/discord/config.py, bots/process/config.py).

Run after adding or changing a setting: `python deploy/gendocs.py` (from the repository root).
tests/ops/test_ops_docs.py fails when either file falls behind the declarations.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bots.process.config import all_declarations  # noqa: E402 - needs the path above when run as a script

# Set in env.example (empty): the values an operator must or usually will fill in. Everything else is a
# commented-out default, so a copied env.example never overrides what the container or unit sets.
FILL_IN = ("OPENAI_API_KEY", "TELEGRAM_TOKEN", "DISCORD_TOKEN")
BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def env_example() -> str:
    lines = [
        "# Easel settings. Copy to `.env` in the directory you run `easel` from (or the repository root for",
        "# deploy/compose.yaml; /etc/easel/easel.env for deploy/easel.service). Real environment variables win.",
        "# Keep this file private (chmod 600): it holds your tokens.",
        "# Set at least OPENAI_API_KEY and one of TELEGRAM_TOKEN / DISCORD_TOKEN. Every other line shows the",
        "# default, commented out; uncomment and change only what you need.",
        "# Generated from the settings' declarations by deploy/gendocs.py.",
    ]
    for spec in all_declarations():
        lines.append("")
        lines.append(f"# {spec.doc}")
        if spec.env in FILL_IN:
            lines.append(f"{spec.env}=")
        else:
            lines.append(f"# {spec.env}={spec.default}")
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for spec in all_declarations():
        default = f"`{spec.default}`" if spec.default else "unset"
        meaning = spec.doc.replace("|", "\\|")
        rows.append(f"| `{spec.env}` | {default} | {meaning} |")
    return "\n".join(rows)


def replace_block(text: str, block: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return f"{text[:start]}\n{block}\n{text[end:]}"


def main() -> None:
    (ROOT / "deploy" / "env.example").write_text(env_example(), encoding="utf-8")
    readme = ROOT / "README.md"
    readme.write_text(replace_block(readme.read_text(encoding="utf-8"), readme_table()), encoding="utf-8")
    print("wrote deploy/env.example and the README configuration table")


if __name__ == "__main__":
    main()
