"""House rules that code review alone would miss."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"discord", "telegram"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_never_imports_a_chat_platform() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & (FORBIDDEN | {"bots"}))
        for path in (ROOT / "core").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_core_loads_no_platform_library() -> None:
    code = (
        "import sys, importlib, pkgutil, core\n"
        "for m in pkgutil.iter_modules(core.__path__): importlib.import_module('core.' + m.name)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in ('discord', 'telegram')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_module_shadows_a_library() -> None:
    names = {p.stem for p in ROOT.glob("*/*.py")} | {p.name for p in ROOT.iterdir() if p.is_dir()}
    assert not names & {"discord", "telegram", "openai"}


# What adapters may use of the core: the values that cross the seam, the ports, the error tree, the words, the
# image options and records they render, their settings (and how a setting is declared), the safety net, and
# the Pillow helpers that fit a result to their platform's upload limits. The services themselves (rounds,
# desk, store, provider routes) are reached only through `core.ports.Services`, built by the composition root
# (bots/process), which is exempt.
SEAM = {"core.events", "core.outcomes", "core.ports", "core.errors", "core.texts", "core.texts.commands",
        "core.flags", "core.spec", "core.records", "core.settings", "core.config", "core.safety",
        "core.provider.pictures"}


def core_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "core")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in {"core", "core.provider"}:
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif node.module.split(".")[0] == "core":
                found.add(node.module)
    return found


def test_adapters_import_only_the_cores_public_seam() -> None:
    adapters = [*(ROOT / "bots" / "telegram").rglob("*.py"), *(ROOT / "bots" / "discord").rglob("*.py"),
                ROOT / "bots" / "console.py"]
    offenders = {str(p.relative_to(ROOT)): sorted(core_imports(p) - SEAM) for p in adapters}
    assert {k: v for k, v in offenders.items() if v} == {}
