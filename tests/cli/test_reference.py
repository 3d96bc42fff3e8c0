"""docs/cli.md is the parser's own help: regenerated here and compared, so a changed option fails until the
reference is regenerated (``python -m fer_features.cli.reference > docs/cli.md``)."""
from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cli.md"


def test_docs_cli_md_is_up_to_date():
    from fer_features.cli.reference import COMMAND, render

    want = render()
    have = DOC.read_text() if DOC.exists() else ""
    diff = list(difflib.unified_diff(have.splitlines(), want.splitlines(), "docs/cli.md", "the parser", lineterm="",
                                     n=1))
    assert not diff, f"docs/cli.md is stale; regenerate it with: {COMMAND}\n" + "\n".join(diff[:40])


def test_every_command_and_option_is_in_it():
    import argparse

    from fer_features.cli.app import build_parser

    text = DOC.read_text()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        assert f"\n## {name}\n" in text and f"usage: python -m fer_features {name}" in text
        section = text.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in section, f"{name} {flag} missing from docs/cli.md"


def test_the_reference_does_not_depend_on_the_terminal(monkeypatch):
    from fer_features.cli.reference import render

    monkeypatch.setenv("COLUMNS", "43")
    narrow = render()
    monkeypatch.setenv("COLUMNS", "250")
    assert render() == narrow
    p = subprocess.run([sys.executable, "-m", "fer_features.cli.reference"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "61"}, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout == narrow
