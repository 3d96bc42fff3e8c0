"""Every error fer_features raises on purpose, with one base.

``FerError`` (a ``ValueError``, so older ``except ValueError`` code still catches it) means bad input or a
request that cannot be met: the command line prints its one-line message and exits 2. ``RunStopped`` means a
run started and then stopped (``--strict`` on an unreadable image, nothing readable): exit 1.
"""
from __future__ import annotations


class FerError(ValueError):
    """Bad input or an impossible request; the message says what to do. The CLI exits 2."""


class DatasetError(FerError):
    """A dataset that cannot be read as asked (missing folder, unknown layout, bad CSV, no classes...)."""


class BackboneError(FerError):
    """Unknown backbone, bad option or weights that cannot be had."""


class CacheError(FerError):
    """Not a cache, an incomplete one, or one that cannot serve the request."""


class ProtocolError(FerError):
    """A protocol that cannot run on these data (no subjects, no split...)."""


class ClassifierError(FerError):
    """Unknown classifier preset or a bad override."""


class AugmentError(FerError):
    """A bad augmentation spec or request."""


class ModelError(FerError):
    """A saved model that cannot be written, read or trusted."""


class PredictError(FerError):
    """Bad predict input or options."""


class ClusterError(FerError):
    """A cluster address that cannot be used, or a shard that keeps failing."""


class MismatchError(FerError):
    """Two results that cannot be compared row by row."""


class ImageReadError(OSError):
    """One image file that cannot be decoded (skipped and listed, or fatal with --strict)."""


class RunStopped(RuntimeError):
    """A run that started and stopped: ``--strict`` on an unreadable image, nothing readable. The CLI exits 1."""


class ExtractionError(RunStopped):
    """Extraction stopped (strict mode on a bad image, or nothing readable)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM during a run: handled like Ctrl-C (finished work kept, the next run resumes). Exit 143."""
