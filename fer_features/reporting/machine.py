"""The machine a measurement ran on, as one line for reports: CPU model, cores, Python and package versions."""
from __future__ import annotations

import importlib
import os
import platform
from importlib import metadata
from typing import Sequence


def cpu_model(fallback: str = "unknown CPU") -> str:
    """The CPU's model name (/proc/cpuinfo), else the platform's processor string, else ``fallback``."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or fallback


def package_version(module: str, dist: str) -> str:
    """The installed distribution's version (sklearnex's ``__version__`` is a placeholder), else the module's."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return getattr(importlib.import_module(module), "__version__", "?")


def machine_info(packages: Sequence[tuple[str, str]] = ()) -> str:
    """'CPU model, N cores; Python x.y.z, <label> <version>...' for benchmark reports.

    ``packages``: (import name, label) pairs, e.g. ``[("tensorflow", "TensorFlow")]``.
    """
    versions = [f"Python {platform.python_version()}"]
    versions += [f"{label} {package_version(mod, label)}" for mod, label in packages]
    return f"{cpu_model()}, {os.cpu_count()} cores; {', '.join(versions)}"
