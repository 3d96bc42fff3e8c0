"""A saved model on real material: every face of every image, folders and lists of files, video frames.

``predict(model, inputs, **options) -> pandas.DataFrame``: one row per detected face (per image when the model
was trained on whole images), with the face's box in source pixels, the detector's score, the predicted label,
a probability per class and an error column. Faces of many images (or video frames) go through the network
together, ``batch_size`` at a time; images are read and faces detected by a small thread pool ahead of the
network; video frames are streamed (never all held in memory). Inputs and videos: ``inputs.py``; the rows,
their files and per-video label shares: ``tables.py``; drawn output: ``annotate.py``.
"""
from __future__ import annotations

import math
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from fer_features.apply.annotate import Annotator
from fer_features.apply.inputs import VIDEO_EXTENSIONS, Item, count_items, expand_inputs, is_video, iter_items
from fer_features.apply.models import SavedModel, as_model
from fer_features.apply.tables import (
    BASE_COLUMNS,
    NO_FACE,
    format_summary,
    item_rows,
    n_read,
    plot_shares,
    to_frame,
    video_summary,
    write_table,
)
from fer_features.data import read_image
from fer_features.data.faces import FaceBox
from fer_features.errors import PredictError

NO_FACE_POLICIES = ("skip", "whole")

__all__ = [  # the API, and the names of inputs.py and tables.py that release 0.1 had here (``inference``)
    "NO_FACE_POLICIES", "FaceClassifier", "predict", "run",
    "VIDEO_EXTENSIONS", "Item", "count_items", "expand_inputs", "is_video",
    "BASE_COLUMNS", "NO_FACE", "format_summary", "item_rows", "n_read", "plot_shares", "to_frame", "video_summary",
    "write_table",
]


class FaceClassifier:
    """A saved model as two steps: ``faces(img)`` (detect every face, crop and prepare each exactly as
    extraction did) and ``proba(batch)`` (network + classifier, columns in ``labels`` order)."""

    def __init__(self, model: SavedModel | Mapping[str, Any] | str | Path, *, batch_size: int = 32,
                 weights: str | None = None, min_face: float | None = None):
        self.model = model = as_model(model)
        self.labels = list(model.label_names)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise PredictError("batch_size must be >= 1")
        self.min_face = min_face
        self.prep, self._proba = model.scorer(batch_size=self.batch_size, weights=weights)
        self.detector = self.prep.detector  # None: a model of whole images
        self.face_crop = self.prep.config.face_crop

    def faces(self, img: np.ndarray, no_face: str = "skip") -> tuple[list, np.ndarray, bool]:
        """(boxes, prepared crops (N, S, S, 3), face_found): one entry per face; a model of whole images,
        or ``no_face == "whole"`` on an image without a face, gives one entry whose box is the whole image."""
        h, w = img.shape[:2]
        whole = [FaceBox(0, 0, w, h, float("nan"))]
        if self.detector is None:
            return whole, self.prep.finish(img)[None], True
        boxes = self.detector.detect_all(img, min_face=self.min_face)
        if not boxes:
            if no_face == "whole":
                return whole, self.prep.finish(img)[None], False
            size = self.prep.config.image_size
            return [], np.zeros((0, size, size, 3), np.uint8), False
        return boxes, np.stack([self.prep.finish(self.prep.crop(img, b)) for b in boxes]), True

    def proba(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, len(self.labels)))
        return np.asarray(self._proba(batch), dtype=float)


def _check_options(every, fps, no_face, min_face) -> None:
    if every is not None and fps is not None:
        raise PredictError("give either every (frames) or fps (frames per second), not both")
    if every is not None and (isinstance(every, bool) or int(every) != every or every < 1):
        raise PredictError(f"every must be a whole number >= 1, got {every!r}")
    if fps is not None and not (float(fps) > 0 and math.isfinite(float(fps))):
        raise PredictError(f"fps must be a positive number, got {fps!r}")
    if no_face not in NO_FACE_POLICIES:
        raise PredictError(f"unknown no_face {no_face!r}; use one of {', '.join(NO_FACE_POLICIES)}")
    if min_face is not None and not (0 < float(min_face) <= 1):
        raise PredictError(f"min_face must be a fraction of the image's short side in (0, 1], got {min_face!r}")


def predict(model, inputs: str | Path | Iterable[str | Path], *, batch_size: int = 32, every: int | None = None,
            fps: float | None = None, no_face: str = "skip", min_face: float | None = None,
            annotate: str | Path | None = None, from_list: str | Path | None = None, weights: str | None = None,
            workers: int = 2, progress: bool = True) -> pd.DataFrame:
    """Apply a saved model (path of ``classify --save`` / ``finetune --save`` output, or a model from
    ``models.load``) to images, folders (recursive), ``@lists`` of paths and videos; return a pandas DataFrame.

    Rows: one per detected face, in input order (faces left to right), with columns ``source``, ``frame``
    and ``time_s`` (videos), ``face`` (index within the image), ``x``, ``y``, ``w``, ``h`` (box in source
    pixels), ``score`` (the detector's), ``label``, ``p_<label>`` per class and ``error``. An image without
    a face gives one row with an empty label and ``error`` ``no_face`` (``no_face="whole"``: the whole image
    is classified instead, and the error says so); an unreadable file gives one row with its error. A model
    trained on whole images (``face_crop none``) gives one row per image (the box is the whole image).
    Videos: every ``every``-th frame, or frames ``1/fps`` seconds apart (default: every frame), streamed.
    ``annotate``: a folder for copies of the images (and of each video, mp4) with boxes and labels drawn.
    ``min_face``: smallest face kept, as a fraction of the image's short side (default: the detector's, 0.2).
    """
    _check_options(every, fps, no_face, min_face)
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    paths = expand_inputs(inputs, from_list)
    if not paths:
        raise PredictError("no inputs given (no files, or empty folders / lists)")
    clf = FaceClassifier(model, batch_size=batch_size, weights=weights, min_face=min_face)
    rows: list[dict[str, Any]] = []
    for item in run(clf, paths, every=every, fps=fps, no_face=no_face, annotate=annotate, workers=workers,
                    progress=progress):
        rows += item_rows(item, clf.labels)
    return to_frame(rows, clf.labels)


def run(clf: FaceClassifier, paths: Sequence[Path], *, every=None, fps=None, no_face="skip", annotate=None,
        workers: int = 2, progress: bool = True) -> Iterator[Item]:
    """Items in input order, each with its boxes and class probabilities (or its error)."""
    annotator = Annotator(annotate, clf.labels) if annotate is not None else None

    def prepare(item: Item) -> Item:
        try:
            if item.image is None and not item.error:
                item.image = read_image(item.source)
            if item.image is not None:
                item.boxes, item.batch, item.found = clf.faces(item.image, no_face)
        except Exception as exc:  # noqa: BLE001 - one bad file is a row, not the end of the run
            msg = str(exc)
            item.error = msg if item.source in msg else f"{item.source}: {type(exc).__name__}: {msg}"
            item.image, item.boxes, item.batch = None, [], None
        if annotator is None:
            item.image = None  # not needed any more: keep memory flat
        return item

    bar = None
    if progress:
        bar = tqdm(total=count_items(paths, every, fps), unit="item", desc="predict", file=sys.stderr,
                   dynamic_ncols=True, mininterval=0.5)
    bs = clf.batch_size
    lookahead = max(2 * bs, 4 * max(1, workers))
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending: deque = deque()
            ready: list[Item] = []
            n_faces = 0
            source = iter(iter_items(paths, every, fps))

            def flush() -> Iterator[Item]:
                nonlocal ready, n_faces
                batches = [it.batch for it in ready if it.batch is not None and len(it.batch)]
                proba = clf.proba(np.concatenate(batches)) if batches else np.zeros((0, len(clf.labels)))
                k = 0
                for it in ready:
                    n = 0 if it.batch is None else len(it.batch)
                    it.proba, k = proba[k:k + n], k + n
                    it.batch = None
                    if annotator is not None:
                        annotator.add(it)
                        it.image = None
                    if bar is not None:
                        bar.update(1)
                    yield it
                ready, n_faces = [], 0

            exhausted = False
            while True:
                while not exhausted and len(pending) < lookahead:
                    nxt = next(source, None)
                    if nxt is None:
                        exhausted = True
                    else:
                        pending.append(pool.submit(prepare, nxt))
                if not pending:
                    break
                it = pending.popleft().result()
                ready.append(it)
                n_faces += 0 if it.batch is None else len(it.batch)
                if n_faces >= bs or len(ready) >= lookahead:
                    yield from flush()
            yield from flush()
    finally:
        if annotator is not None:
            annotator.close()
        if bar is not None:
            bar.close()
