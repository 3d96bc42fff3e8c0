"""The in-process CLI runner (tests/helpers.py) behaves as ``python -m fer_features`` would for the tests that
use it: exit statuses, captured streams, warnings shown once per call, nothing leaking into the next call."""
from __future__ import annotations

import os
import sys
import warnings

import pytest

import fer_features.cli
from helpers import run_cli


def test_argparse_exits_become_return_codes():
    p = run_cli("--no-such-option")
    assert p.returncode == 2 and "usage: python -m fer_features" in p.stderr and p.stdout == ""
    p = run_cli("--help")
    assert p.returncode == 0 and p.stdout.startswith("usage: python -m fer_features") and p.stderr == ""
    p = run_cli("extract")  # a required option missing
    assert p.returncode == 2 and "--data" in p.stderr


def _fake_main(behaviour):
    def main(argv):
        print("to stdout")
        print("to stderr", file=sys.stderr)
        return behaviour(argv)

    return main


@pytest.mark.parametrize("behaviour, code, said", [
    (lambda argv: 3, 3, None),
    (lambda argv: None, 0, None),
    (lambda argv: sys.exit(4), 4, None),
    (lambda argv: sys.exit(), 0, None),
    (lambda argv: sys.exit("bye"), 1, "bye"),
    (lambda argv: 1 / 0, 1, "ZeroDivisionError"),  # uncaught: a traceback and status 1, as the interpreter does
])
def test_outcomes_and_streams(monkeypatch, behaviour, code, said):
    monkeypatch.setattr(fer_features.cli, "main", _fake_main(behaviour))
    p = run_cli("anything", 5)
    assert p.args == ["anything", "5"] and p.returncode == code
    assert p.stdout == "to stdout\n" and p.stderr.startswith("to stderr\n")
    assert (said or "") in p.stderr and (said is not None or p.stderr == "to stderr\n")


def test_environment_cwd_and_warning_display_are_the_calls_own(monkeypatch, tmp_path):
    def main(argv):
        assert os.environ["FER_TEST_VAR"] == "set" and "FER_TEST_GONE" not in os.environ
        assert os.getcwd() == str(tmp_path)
        os.environ["FER_TEST_LEFT"] = "1"  # a command setting a variable: undone after the call
        warnings.showwarning = lambda *a, **k: print("custom display", file=sys.stderr)  # as cli.main does
        warnings.warn("a user warning")  # shown in every call (a fresh process would show it each time)
        warnings.warn("deprecated", DeprecationWarning)  # hidden, as in a fresh process
        return 0

    monkeypatch.setattr(fer_features.cli, "main", main)
    monkeypatch.setenv("FER_TEST_GONE", "x")
    before = warnings.showwarning
    for _ in range(2):
        p = run_cli(cwd=tmp_path, env={"FER_TEST_VAR": "set", "FER_TEST_GONE": None})
        assert p.returncode == 0 and p.stderr.count("custom display") == 1, p.stderr
    assert "FER_TEST_LEFT" not in os.environ and "FER_TEST_VAR" not in os.environ
    assert os.environ["FER_TEST_GONE"] == "x" and os.getcwd() != str(tmp_path)
    assert warnings.showwarning is before


def test_a_real_command_in_process(tmp_path):
    p = run_cli("info", tmp_path / "none.h5")
    assert p.returncode == 2 and "none.h5" in p.stderr and p.stdout == ""
    assert p.seconds > 0
