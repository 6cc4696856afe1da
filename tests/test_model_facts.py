"""One home per fact: the model's rate and frame size and the default sampling live in model_facts only.

The sample rate once lived under five names and the sampling defaults in four places, kept equal
by hand; these checks fail when a module states one of them again instead of importing it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from soprano_cli import model_facts

HOME = Path(model_facts.__file__)
PACKAGE = HOME.parent

# Numbers that are facts wherever they stand as a value of their own (assigned, a default, an
# argument, an operand); the frame size only in arithmetic (2048 is also a listen backlog). The
# sampling defaults are common numbers (a 0.95 pass mark is no top_p): they are checked by name.
FACT_VALUES = {model_facts.SAMPLE_RATE}
FRAME_VALUES = {model_facts.SAMPLES_PER_FRAME}
# Names whose numeric default (assigned, a parameter's, a dict's) is one that model_facts holds.
FACT_NAMES = {"temperature", "top_p", "repetition_penalty", "max_new_tokens", "max_frames", "retries"}


def restated(source: str) -> list[str]:
    """`line: name = value` for each fact `source` writes as a number instead of importing it."""
    found = []

    def check(name: str | None, value: ast.AST | None, facts=FACT_VALUES) -> None:
        if not isinstance(value, ast.Constant) or type(value.value) not in (int, float):
            return
        if value.value in facts or name in FACT_NAMES:
            found.append(f"{value.lineno}: {name or '?'} = {value.value!r}")

    def name_of(target: ast.AST) -> str | None:
        return getattr(target, "id", getattr(target, "attr", None))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                check(name_of(target), node.value)
        elif isinstance(node, ast.AnnAssign):
            check(name_of(node.target), node.value)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            positional = args.posonlyargs + args.args
            for arg, default in zip(positional[len(positional) - len(args.defaults):], args.defaults):
                check(arg.arg, default)
            for arg, default in zip(args.kwonlyargs, args.kw_defaults):
                check(arg.arg, default)
        elif isinstance(node, ast.Call):
            for value in node.args:
                check(None, value)
            for keyword in node.keywords:  # a call may pass its own value (a warm-up's few frames)
                check(None, keyword.value)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                check(key.value if isinstance(key, ast.Constant) else None, value)
        elif isinstance(node, ast.BinOp):
            for operand in (node.left, node.right):
                check(None, operand, FACT_VALUES | FRAME_VALUES)
    return found


def test_no_module_restates_a_model_fact():
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}" for path in sorted(PACKAGE.rglob("*.py")) if path != HOME
             for line in restated(path.read_text(encoding="utf-8"))]
    assert not found, "import these from soprano_cli.model_facts instead:\n" + "\n".join(found)


def test_the_check_finds_each_kind_of_restatement():
    source = ("RATE = 32000\nplayer = Player(32000, 1)\ndef f(top_p=0.9, *, retries=1): return n // 2048\n"
              "DEFAULTS = {'repetition_penalty': 1.2}\nsock.listen(2048)\n")
    assert sorted(line.split(":")[0] for line in restated(source)) == ["1", "2", "3", "3", "3", "4"]


def test_model_facts_imports_nothing():
    tree = ast.parse(HOME.read_text(encoding="utf-8"))
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert [getattr(node, "module", None) for node in imports] == ["__future__"]
    # The daemon's client reads the facts too, and must stay free of torch.
    code = "import sys, soprano_cli.server.client; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
