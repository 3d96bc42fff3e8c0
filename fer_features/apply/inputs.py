"""predict's inputs as a stream of items: files as given, folders expanded, ``@lists`` read, and each video's
sampled frames (every N-th, or F per second), streamed so that a long video is never held in memory."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from fer_features.data import IMAGE_EXTENSIONS
from fer_features.errors import PredictError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def expand_inputs(items: Iterable[str | Path], from_list: str | Path | None = None) -> list[Path]:
    """Files as given; folders expanded recursively (sorted) to their image and video files; ``@list.txt``
    (or ``from_list``) read as one path per line (blank lines and ``#`` comments skipped; relative paths are
    taken from the list's folder)."""

    def read_list(lst: Path) -> list[str]:
        try:
            lines = lst.read_text().splitlines()
        except OSError as exc:
            raise PredictError(f"cannot read the list of inputs {lst}: {exc.strerror or exc}") from None
        out = []
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                p = Path(line)
                out.append(str(p if p.is_absolute() else lst.parent / p))
        return out

    todo: list[str] = [str(i) for i in items]
    if from_list is not None:
        todo += read_list(Path(from_list))
    out: list[Path] = []
    for it in todo:
        if it.startswith("@") and len(it) > 1 and not Path(it).exists():
            out += expand_inputs(read_list(Path(it[1:])))
            continue
        p = Path(it)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith(".")
                          and (q.suffix.lower() in IMAGE_EXTENSIONS or q.suffix.lower() in VIDEO_EXTENSIONS))
        else:
            out.append(p)
    return out


@dataclass
class Item:
    """One image, or one sampled frame of a video, and what became of it."""

    source: str
    frame: int | None = None
    time_s: float | None = None
    image: np.ndarray | None = None  # RGB / grey uint8; dropped once annotated
    error: str = ""
    video: bool = False
    video_fps: float | None = None  # the rate of the sampled frames (for an annotated video)
    last: bool = True  # the last item of its source
    boxes: list = field(default_factory=list)
    batch: np.ndarray | None = None
    found: bool = True
    proba: np.ndarray | None = None


def _frame_step(src_fps: float, every: int | None, fps: float | None) -> tuple[int | None, float | None]:
    if every is not None:
        return int(every), None
    if fps is not None:
        return None, float(fps)
    return 1, None


def _video_items(path: Path, every: int | None, fps: float | None) -> Iterator[Item]:
    """The sampled frames of one video, streamed: ``every`` N-th frame, or frames ``1/fps`` seconds apart."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        yield Item(str(path), error=f"{path}: cannot open as a video", video=True)
        return
    try:
        src_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        known = src_fps > 0 and math.isfinite(src_fps)
        if not known:
            src_fps = 25.0
        step, rate = _frame_step(src_fps, every, fps)
        out_fps = src_fps / step if step else rate
        i, next_t, held = 0, 0.0, None
        while True:
            t = i / src_fps
            take = (i % step == 0) if step else (t + 1e-9 >= next_t)
            if take:
                ok, frame = cap.read()
                if not ok:
                    break
                if rate:
                    next_t += 1.0 / rate
                    while next_t <= t:
                        next_t += 1.0 / rate
                if not known:
                    t = float(cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000.0
                item = Item(str(path), i, round(t, 6), cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), video=True,
                            video_fps=out_fps, last=False)
                if held is not None:
                    yield held
                held = item
            elif not cap.grab():
                break
            i += 1
        if held is None:
            yield Item(str(path), error=f"{path}: no frame could be read", video=True)
        else:
            held.last = True
            yield held
    finally:
        cap.release()


def iter_items(paths: Sequence[Path], every, fps) -> Iterator[Item]:
    """Each image as one item (read later, in a worker), each video as its sampled frames (read here)."""
    for p in paths:
        if is_video(p):
            yield from _video_items(p, every, fps)
        else:
            yield Item(str(p))  # read in the worker


def count_items(paths: Sequence[Path], every, fps) -> int:
    """Images plus the expected number of sampled frames (for the progress bar; from the video headers)."""
    n = 0
    for p in paths:
        if not is_video(p):
            n += 1
            continue
        cap = cv2.VideoCapture(str(p))
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
        src_fps = float(cap.get(cv2.CAP_PROP_FPS) or 25.0) if cap.isOpened() else 25.0
        cap.release()
        step, rate = _frame_step(src_fps, every, fps)
        n += max(1, math.ceil(frames / step) if step else math.ceil(frames / src_fps * rate))
    return n
