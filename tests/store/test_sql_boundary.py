"""Every line of SQL lives in core/store/: nothing else in core/ or bots/ imports sqlite3 or sqlite-utils, or
holds a SQL statement in a string literal."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STORE = ROOT / "core" / "store"
DATABASE_MODULES = {"sqlite3", "sqlite_utils", "psycopg", "psycopg_pool", "asyncpg"}
SQL = re.compile(
    r"\b(SELECT\b.+\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\b.+\bSET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX)"
    r"|PRAGMA\s+\w+)\b",
    re.DOTALL,  # upper case, as every statement in this code base is written: prose does not match
)


def _sources() -> list[Path]:
    return sorted(
        path
        for folder in ("core", "bots")
        for path in (ROOT / folder).rglob("*.py")
        if STORE not in path.parents and "__pycache__" not in path.parts
    )


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        line = getattr(node, "lineno", 0)
        found += [f"line {line}: imports {n}" for n in names if n.split(".")[0] in DATABASE_MODULES]
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            found.append(f"line {node.lineno}: SQL {node.value[:60]!r}")
    return found


def test_the_scanner_finds_sql() -> None:
    assert SQL.search("SELECT * FROM rounds WHERE id = ?")
    assert SQL.search("INSERT OR IGNORE INTO inbox (a) VALUES (?)")
    assert SQL.search("UPDATE notices SET sent_at = ?")
    assert not SQL.search("Select the image you want to edit from the list")
    assert not SQL.search("Please update your settings")


def test_no_sql_outside_the_store() -> None:
    offenders = {str(path.relative_to(ROOT)): found for path in _sources() if (found := _violations(path))}
    assert offenders == {}
