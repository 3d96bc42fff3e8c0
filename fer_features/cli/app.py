"""The command line: a thin layer over the Python API. ``python -m fer_features --help``.

Each command is a module of this package with ``register(subparsers)`` (its parser, ``func=run``) and
``run(args) -> exit status``; ``COMMANDS`` lists them in the order ``--help`` shows them. Options shared by
several commands are declared once in ``_options``. Exit statuses: 0 done, 2 bad input (``FerError``,
``ValueError``, ``FileNotFoundError``: one ``error:`` line), 1 a run that started and stopped (``RunStopped``),
130 interrupted, 143 terminated, 141 stdout closed by its reader."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from importlib.metadata import PackageNotFoundError, version
from typing import Sequence

from fer_features import __version__
from fer_features.cli import (
    backbones,
    classifiers,
    classify,
    compare,
    duplicates,
    experiment,
    extract,
    finetune,
    info,
    merge,
    predict,
    significance,
)
from fer_features.cli._options import Fmt
from fer_features.errors import FerError, RunStopped, Terminated

EXIT_USAGE = 2  # bad input: missing data, unknown layout, bad option
EXIT_FAILED = 1  # the run started and stopped (e.g. --strict on an unreadable image)

COMMANDS = (extract, backbones, info, merge, duplicates, classify, compare, significance, experiment, finetune,
            classifiers, predict)

DESCRIPTION = ("Facial expression recognition by transfer learning: frozen CNN features, "
               "scikit-learn classifiers and honest (subject-independent) evaluation.")
PROG = "python -m fer_features"
_Fmt = Fmt  # its name here before the commands moved to modules of their own


def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _one_line_warnings(command: str) -> None:
    """Show this package's warnings once each, as ``fer_features CMD: warning: ...`` lines on stderr."""
    default, pkg, shown = (warnings.showwarning,
                           os.path.dirname(os.path.dirname(os.path.abspath(__file__))), set())

    def show(message, category, filename, lineno, file=None, line=None):
        if not str(filename).startswith(pkg):
            return default(message, category, filename, lineno, file, line)
        if str(message) not in shown:
            shown.add(str(message))
            print(f"fer_features {command}: warning: {message}", file=sys.stderr)

    warnings.showwarning = show


def _version() -> str:
    """The installed distribution's version, else the package's ``__version__`` (a source checkout)."""
    try:
        return version("fer_features")
    except PackageNotFoundError:
        return __version__


def _stdout_closed() -> int:
    """The reader of stdout went away (``... | head``): point stdout at devnull so exit stays quiet; 141."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, what a shell reports for a command whose pipe closed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, formatter_class=Fmt, description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"fer_features {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_tf()
    parser = build_parser()
    a = parser.parse_args(argv)
    _one_line_warnings(a.command)
    try:
        rc = int(a.func(a) or 0)
        sys.stdout.flush()  # here, so that a closed pipe is caught below rather than at exit
        return rc
    except BrokenPipeError:
        return _stdout_closed()
    except (FerError, ValueError, FileNotFoundError) as exc:  # FerError: bad input, said in one line
        print(f"fer_features {a.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RunStopped as exc:
        print(f"fer_features {a.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        print(interrupted_message(a), file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


def interrupted_message(a: argparse.Namespace) -> str:
    """What Ctrl-C (or SIGTERM) leaves behind, said for the command that was stopped: only extract and a
    checkpointed finetune resume; everything else starts over."""
    if a.command == "extract":
        return "interrupted: the extraction resumes where it stopped when run again"
    if a.command == "finetune" and getattr(a, "checkpoint_dir", None):
        return ("interrupted: the training resumes from its last checkpoint when the same command runs again "
                f"(--checkpoint-dir {a.checkpoint_dir})")
    return "interrupted"


if __name__ == "__main__":
    sys.exit(main())
