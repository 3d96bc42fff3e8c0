"""Annotated copies of predict's inputs: each face's box and label (with its probability) drawn with OpenCV;
images as PNG, each video as an mp4 (mp4v) of its sampled frames at the sampling rate."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

# distinct BGR colours, one per class (cycled)
_PALETTE = [(60, 180, 75), (48, 130, 245), (75, 25, 230), (240, 50, 230), (200, 130, 0), (0, 200, 255),
            (180, 30, 145), (128, 128, 0), (40, 110, 170), (0, 0, 128)]


def draw(image: np.ndarray, boxes, proba, labels: Sequence[str], note: str = "") -> np.ndarray:
    """A BGR uint8 copy of ``image`` (grey or RGB) with each box and 'label p' above it."""
    img = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    out = np.ascontiguousarray(img[..., :3][..., ::-1])  # RGB -> BGR for cv2
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 200))
    fscale = max(0.4, min(h, w) / 600)
    for b, p in zip(boxes, proba):
        k = int(np.argmax(p))
        colour = _PALETTE[k % len(_PALETTE)]
        cv2.rectangle(out, (int(b.x), int(b.y)), (int(b.x + b.w - 1), int(b.y + b.h - 1)), colour, thick)
        text = f"{labels[k]} {float(p[k]):.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fscale, thick)
        ty = int(b.y) - 4 if int(b.y) - th - base - 4 >= 0 else min(h - 1, int(b.y + b.h) + th + 4)
        x0 = max(0, int(b.x))
        cv2.rectangle(out, (x0, ty - th - base), (x0 + tw + 4, ty + base), colour, cv2.FILLED)
        cv2.putText(out, text, (x0 + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, fscale, (255, 255, 255), thick, cv2.LINE_AA)
    if note:
        cv2.putText(out, note, (5, 5 + int(22 * fscale)), cv2.FONT_HERSHEY_SIMPLEX, fscale, (0, 0, 255), thick,
                    cv2.LINE_AA)
    return out


class Annotator:
    """Writes annotated images and videos into ``folder`` as predict's items arrive (in input order)."""

    def __init__(self, folder: str | Path, labels: Sequence[str]):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.labels = list(labels)
        self.used: set[str] = set()
        self.writer = None
        self.written: list[Path] = []

    def _name(self, source: str, ext: str) -> Path:
        stem = Path(source).stem or "input"
        name, i = f"{stem}_annotated{ext}", 1
        while name in self.used:
            name, i = f"{stem}_annotated_{i}{ext}", i + 1
        self.used.add(name)
        return self.folder / name

    def add(self, item) -> None:
        if item.image is None:  # unreadable: nothing to draw
            if item.video and item.last:
                self._close_video()
            return
        note = "" if item.boxes else "no face"
        if item.boxes and not item.found:
            note = "no face: whole image classified"
        img = draw(item.image, item.boxes, item.proba if item.proba is not None else [], self.labels, note)
        if not item.video:
            path = self._name(item.source, ".png")
            cv2.imwrite(str(path), img)
            self.written.append(path)
            return
        if self.writer is None:
            path = self._name(item.source, ".mp4")
            h, w = img.shape[:2]
            self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(item.video_fps or 25.0),
                                          (w, h))
            self.written.append(path)
        self.writer.write(img)
        if item.last:
            self._close_video()

    def _close_video(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None

    def close(self) -> None:
        self._close_video()
