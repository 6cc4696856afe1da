"""Layering: the library never reaches up into the command line.

`soprano_cli.cli` is the top layer (options, terminal output, exit codes); everything else is a
library that the CLI, the server and the Python API share, so nothing outside `cli/` may import it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "soprano_cli"


# The entry point sits above every layer: `python -m soprano_cli` runs the CLI.
ENTRY_POINTS = {PACKAGE / "__main__.py"}


def imported_modules(source: str, package: str) -> set[str]:
    """Every module `source` (a module of `package`) imports, at the top or inside functions,
    relative imports resolved."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from soprano_cli import cli`
    return found


def test_imported_modules_sees_every_form_of_import():
    source = (
        "import soprano_cli.cli.app\n"
        "def late():\n"
        "    from ..cli import textio\n"
        "    from soprano_cli import cli\n"
    )
    found = imported_modules(source, "soprano_cli.server")
    assert {"soprano_cli.cli.app", "soprano_cli.cli", "soprano_cli.cli.textio"} <= found


def test_no_module_outside_cli_imports_cli():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(PACKAGE / "cli") or path in ENTRY_POINTS:
            continue
        package = ".".join(path.relative_to(PACKAGE.parent).parts[:-1])
        for module in imported_modules(path.read_text(encoding="utf-8"), package):
            if module == "soprano_cli.cli" or module.startswith("soprano_cli.cli."):
                offenders.append(f"{path.relative_to(PACKAGE.parent)} imports {module}")
    assert not offenders, "a lower layer imports the CLI:\n" + "\n".join(offenders)
