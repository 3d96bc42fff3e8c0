"""The command line: ``python -m fer_features`` / ``fer-features``."""
from fer_features.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
