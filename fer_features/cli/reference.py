"""The command-line reference, docs/cli.md, written from the parser itself::

    python -m fer_features.cli.reference > docs/cli.md

Every command's ``--help`` as Markdown, wrapped at ``WIDTH`` columns whatever the terminal, so the file is the
same on every machine (tests/cli/test_reference.py regenerates it and fails when docs/cli.md is stale)."""
from __future__ import annotations

import argparse
import functools
import sys

from fer_features.cli.app import PROG, build_parser

WIDTH = 100
COMMAND = "python -m fer_features.cli.reference > docs/cli.md"


def _fixed_width(parser: argparse.ArgumentParser, width: int) -> argparse.ArgumentParser:
    """The parser, its help wrapped at ``width`` columns (argparse otherwise asks the terminal)."""
    parser.formatter_class = functools.partial(parser.formatter_class, width=width)
    return parser


def _block(text: str) -> list[str]:
    return ["```text", *[line.rstrip() for line in text.rstrip().splitlines()], "```", ""]


def render(width: int = WIDTH) -> str:
    """docs/cli.md: a table of the commands, then the top-level help and each command's, in ``--help`` order."""
    top = _fixed_width(build_parser(), width)
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    summary = {a.dest: a.help or "" for a in sub._choices_actions}
    intro = (f"Every command's `--help`, generated from the parser: `{COMMAND}` (do not edit by hand; "
             "tests/cli/test_reference.py fails when this file is stale). Start with "
             "[the README's quick start](../README.md); each command's page in docs/ explains its choices.")
    rows = [f"| [`{name}`](#{name}) | {summary[name].replace('|', chr(92) + '|')} |" for name in sub.choices]
    lines = ["# Command-line reference", "", intro, "", "| command | what it does |", "|---|---|", *rows, "",
             f"## {PROG}", "", *_block(top.format_help())]
    for name, parser in sub.choices.items():
        lines += [f"## {name}", "", *_block(_fixed_width(parser, width).format_help())]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
