"""A saved model on real material: every face of every image, folders and lists of files, video frames.

``predict(model, inputs, **options) -> pandas.DataFrame``: one row per detected face (per image when the model
was trained on whole images), with the face's box in source pixels, the detector's score, the predicted label,
a probability per class and an error column. Faces of many images (or video frames) go through the network
together, ``batch_size`` at a time; images are read and faces detected by a small thread pool ahead of the
network; video frames are streamed (never all held in memory). See ``annotate.py`` for drawn output and
``video_summary`` / ``plot_shares`` for per-video label shares.
"""
from __future__ import annotations

import math
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from fer_features.errors import PredictError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
NO_FACE_POLICIES = ("skip", "whole")
NO_FACE = "no_face"
BASE_COLUMNS = ("source", "frame", "time_s", "face", "x", "y", "w", "h", "score", "label")


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def expand_inputs(items: Iterable[str | Path], from_list: str | Path | None = None) -> list[Path]:
    """Files as given; folders expanded recursively (sorted) to their image and video files; ``@list.txt``
    (or ``from_list``) read as one path per line (blank lines and ``#`` comments skipped; relative paths are
    taken from the list's folder)."""
    from fer_features.data.datasets import IMAGE_EXTENSIONS

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


# -- the model ---------------------------------------------------------------------------------------------

class FaceClassifier:
    """A loaded model bundle as two steps: ``faces(img)`` (detect every face, crop and prepare each exactly as
    extraction did) and ``proba(batch)`` (network + classifier, columns in ``labels`` order)."""

    def __init__(self, bundle: dict, *, batch_size: int = 32, weights: str | None = None,
                 min_face: float | None = None):
        self.labels = list(bundle["label_names"])
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise PredictError("batch_size must be >= 1")
        self.min_face = min_face
        if "keras_model" in bundle:  # fine-tuned network: the same preprocessing, then the network end to end
            from fer_features.finetune.train import predict_proba, preprocessor

            self.prep = preprocessor(bundle["extraction"])
            model = bundle["keras_model"]

            def proba(batch):
                return predict_proba(model, batch, self.batch_size)
            self._proba = proba
        else:
            from fer_features.features.extract import FeatureExtractor

            settings = dict(bundle["extraction"])
            if weights:
                settings["weights"] = weights
            self.extractor = fx = FeatureExtractor(batch_size=self.batch_size, **settings).fit()
            self.prep = fx.preprocessor_
            pipe = bundle["pipeline"]
            cols = [int(c) for c in pipe.classes_]
            n = len(self.labels)

            def proba(batch):
                feats = fx.embed(batch)
                if hasattr(pipe, "predict_proba"):
                    p = pipe.predict_proba(feats)
                else:  # no probabilities: one-hot of the prediction
                    p = np.eye(len(cols))[[cols.index(int(c)) for c in pipe.predict(feats)]]
                out = np.zeros((len(batch), n))
                out[:, cols] = p
                return out
            self._proba = proba
        self.detector = self.prep.detector  # None: a model of whole images
        self.face_crop = self.prep.config.face_crop

    def faces(self, img: np.ndarray, no_face: str = "skip") -> tuple[list, np.ndarray, bool]:
        """(boxes, prepared crops (N, S, S, 3), face_found): one entry per face; a model of whole images,
        or ``no_face == "whole"`` on an image without a face, gives one entry whose box is the whole image."""
        from fer_features.data.preprocess import FaceBox

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


# -- inputs as a stream of items -------------------------------------------------------------------------

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
    import cv2

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


def _items(paths: Sequence[Path], every, fps) -> Iterator[Item]:
    for p in paths:
        if is_video(p):
            yield from _video_items(p, every, fps)
        else:
            yield Item(str(p))  # read in the worker


def count_items(paths: Sequence[Path], every, fps) -> int:
    """Images plus the expected number of sampled frames (for the progress bar; from the video headers)."""
    import cv2

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


# -- the run ---------------------------------------------------------------------------------------------

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


def _load(model) -> dict:
    if isinstance(model, dict):
        return model
    from fer_features.apply.models import load_model

    return load_model(model)


def predict(model, inputs: str | Path | Iterable[str | Path], *, batch_size: int = 32, every: int | None = None,
            fps: float | None = None, no_face: str = "skip", min_face: float | None = None,
            annotate: str | Path | None = None, from_list: str | Path | None = None, weights: str | None = None,
            workers: int = 2, progress: bool = True):
    """Apply a saved model (path of ``classify --save`` / ``finetune --save`` output, or a loaded bundle) to
    images, folders (recursive), ``@lists`` of paths and videos; return a pandas DataFrame.

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
    import pandas as pd

    _check_options(every, fps, no_face, min_face)
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    paths = expand_inputs(inputs, from_list)
    if not paths:
        raise PredictError("no inputs given (no files, or empty folders / lists)")
    bundle = _load(model)
    clf = FaceClassifier(bundle, batch_size=batch_size, weights=weights, min_face=min_face)
    rows: list[dict[str, Any]] = []
    for item in run(clf, paths, every=every, fps=fps, no_face=no_face, annotate=annotate, workers=workers,
                    progress=progress):
        rows += item_rows(item, clf.labels)
    return to_frame(rows, clf.labels, pd)


def run(clf: FaceClassifier, paths: Sequence[Path], *, every=None, fps=None, no_face="skip", annotate=None,
        workers: int = 2, progress: bool = True) -> Iterator[Item]:
    """Items in input order, each with its boxes and class probabilities (or its error)."""
    from fer_features.data.datasets import read_image

    annotator = None
    if annotate is not None:
        from fer_features.apply.annotate import Annotator

        annotator = Annotator(annotate, clf.labels)

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
        from tqdm import tqdm

        bar = tqdm(total=count_items(paths, every, fps), unit="item", desc="predict", file=sys.stderr,
                   dynamic_ncols=True, mininterval=0.5)
    bs = clf.batch_size
    lookahead = max(2 * bs, 4 * max(1, workers))
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending: deque = deque()
            ready: list[Item] = []
            n_faces = 0
            source = iter(_items(paths, every, fps))

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


def item_rows(item: Item, labels: Sequence[str]) -> list[dict[str, Any]]:
    base = {"source": item.source, "frame": item.frame, "time_s": item.time_s}
    empty = {"face": None, "x": None, "y": None, "w": None, "h": None, "score": None, "label": "",
             **{f"p_{lab}": None for lab in labels}}
    if item.error:
        return [{**base, **empty, "error": item.error}]
    if not item.boxes:
        return [{**base, **empty, "error": NO_FACE}]
    note = "" if item.found else f"{NO_FACE}: whole image classified"
    out = []
    for i, (b, p) in enumerate(zip(item.boxes, item.proba)):
        out.append({**base, "face": i, "x": b.x, "y": b.y, "w": b.w, "h": b.h,
                    "score": None if b.score is None or not math.isfinite(b.score) else float(b.score),
                    "label": labels[int(np.argmax(p))], **{f"p_{lab}": float(v) for lab, v in zip(labels, p)},
                    "error": note})
    return out


def to_frame(rows: list[dict], labels: Sequence[str], pd=None):
    if pd is None:
        import pandas as pd
    cols = [*BASE_COLUMNS, *[f"p_{lab}" for lab in labels], "error"]
    df = pd.DataFrame(rows, columns=cols)
    for c in ("frame", "face", "x", "y", "w", "h"):
        df[c] = df[c].astype("Int64")
    for c in ("time_s", "score", *[f"p_{lab}" for lab in labels]):
        df[c] = df[c].astype(float)
    df["label"] = df["label"].fillna("").astype(str)
    df["error"] = df["error"].fillna("").astype(str)
    return df


def n_read(df) -> int:
    """How many rows come from an input that could be read (a face, or a no-face note)."""
    return int((~df["error"].str.len().astype(bool) | df["error"].str.startswith(NO_FACE)).sum())


def write_table(df, output: str | Path | None, stream=None) -> None:
    """CSV to ``stream`` (stdout) when ``output`` is None; else by extension: .csv, .json, .jsonl, .parquet."""
    if output is None:
        df.to_csv(stream or sys.stdout, index=False, float_format="%.6g")
        return
    out = Path(output)
    ext = out.suffix.lower()
    if ext == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise PredictError(f"{out}: writing parquet needs pyarrow (pip install pyarrow); "
                               "or use .csv / .json") from None
    elif ext not in (".csv", ".json", ".jsonl"):
        raise PredictError(f"{out}: unknown output type {ext or '(none)'}; use .csv, .json, .jsonl or .parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".csv":
        df.to_csv(out, index=False, float_format="%.6g")
    elif ext == ".json":
        df.to_json(out, orient="records", indent=1)
    elif ext == ".jsonl":
        df.to_json(out, orient="records", lines=True)
    else:
        df.to_parquet(out, index=False)


# -- per-video label shares ----------------------------------------------------------------------------

def video_summary(df, window: float = 10.0):
    """Label shares (of the labelled faces) per video, overall (``window_start`` NaN) and per ``window``
    seconds: a DataFrame with columns source, window_start, n_faces and one share column per label."""
    import pandas as pd

    labels = [c[2:] for c in df.columns if c.startswith("p_")]
    vid = df[df["frame"].notna() & (df["label"] != "")]
    out = []
    for src, g in vid.groupby("source", sort=False):
        parts = [(float("nan"), g)]
        if window and window > 0:
            start = (g["time_s"] // window) * window
            parts += [(float(s), gg) for s, gg in g.groupby(start)]
        for s, gg in parts:
            counts = gg["label"].value_counts()
            out.append({"source": src, "window_start": s, "n_faces": int(len(gg)),
                        **{lab: float(counts.get(lab, 0)) / len(gg) for lab in labels}})
    return pd.DataFrame(out, columns=["source", "window_start", "n_faces", *labels])


def format_summary(summary) -> str:
    labels = list(summary.columns[3:])
    lines = []
    for src, g in summary.groupby("source", sort=False):
        lines.append(f"{src}: label shares of {int(g['n_faces'].iloc[0])} face(s)")
        w = max(8, *(len(lab) for lab in labels))
        lines.append(f"  {'window':>12} {'faces':>6} " + " ".join(f"{lab:>{w}}" for lab in labels))
        for _, r in g.iterrows():
            name = "all" if math.isnan(r["window_start"]) else f"{r['window_start']:.0f} s"
            lines.append(f"  {name:>12} {int(r['n_faces']):>6} " + " ".join(f"{r[lab]:>{w}.2f}" for lab in labels))
    return "\n".join(lines)


def plot_shares(summary, folder: str | Path, window: float = 10.0) -> list[Path]:
    """One small PNG per video: label shares per time window (stacked areas)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = list(summary.columns[3:])
    written = []
    for src, g in summary.groupby("source", sort=False):
        g = g[g["window_start"].notna()].sort_values("window_start")
        if g.empty:
            continue
        fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
        x = np.append(g["window_start"].to_numpy(), g["window_start"].iloc[-1] + window)  # the last window's end
        ax.stackplot(x, *[np.append(g[lab].to_numpy(), g[lab].iloc[-1]) for lab in labels], labels=labels,
                     step="post")
        ax.set_xlabel("time (s, window start)")
        ax.set_ylabel("share of faces")
        ax.set_ylim(0, 1)
        ax.set_title(Path(src).name, fontsize=9)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        path = folder / f"{Path(src).stem}_shares.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


# -- command line (hooked into cli.py's predict) ---------------------------------------------------------

def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="model saved by classify --save (.skops) or finetune --save (.keras)")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="images, videos, folders (searched recursively) or @LIST (a text file, one path a line)")
    p.add_argument("--from-list", default=None, metavar="FILE", help="also read input paths from FILE, one a line")
    p.add_argument("--output", "-o", default=None, metavar="FILE",
                   help="write the rows to FILE: .csv, .json, .jsonl or .parquet (needs pyarrow); default CSV "
                        "on stdout")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout instead of CSV")
    p.add_argument("--batch-size", type=int, default=32, help="faces per forward pass of the network")
    p.add_argument("--every", type=int, default=None, metavar="N", help="videos: every N-th frame (default: all)")
    p.add_argument("--fps", type=float, default=None, metavar="F", help="videos: F frames per second of video")
    p.add_argument("--no-face", choices=NO_FACE_POLICIES, default="skip",
                   help="an image without a face: a row saying no_face (skip), or classify the whole image")
    p.add_argument("--min-face", type=float, default=None, metavar="FRAC",
                   help="smallest face kept, as a fraction of the image's short side (default: the detector's "
                        "0.2; lower it for group photos)")
    p.add_argument("--annotate", default=None, metavar="DIR",
                   help="write copies with boxes and labels drawn: PNG per image, mp4 per video")
    p.add_argument("--summary", action="store_true",
                   help="print each video's label shares, overall and per --window seconds (on stderr)")
    p.add_argument("--window", type=float, default=10.0, metavar="S", help="time window of --summary / --plot")
    p.add_argument("--plot", default=None, metavar="DIR", help="write a PNG of each video's label shares over time")
    p.add_argument("--workers", type=int, default=2, help="threads reading images and detecting faces")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--weights", default=None, help="override the backbone weights file recorded in the model")


def main(a) -> int:
    """``fer_features predict``: rows to stdout / --output; exit 1 when no input could be read at all."""
    if not a.inputs and not a.from_list:
        raise PredictError("no inputs given")
    if a.output:
        ext = Path(a.output).suffix.lower()
        if ext not in (".csv", ".json", ".jsonl", ".parquet"):
            raise PredictError(f"{a.output}: unknown output type {ext or '(none)'}; use .csv, .json, .jsonl or "
                               ".parquet")
        if ext == ".parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise PredictError(f"{a.output}: writing parquet needs pyarrow (pip install pyarrow); "
                                   "or use .csv / .json") from None
    df = predict(a.model, a.inputs, batch_size=a.batch_size, every=a.every, fps=a.fps, no_face=a.no_face,
                 min_face=a.min_face, annotate=a.annotate, from_list=a.from_list, weights=a.weights,
                 workers=a.workers, progress=not a.no_progress)
    if a.json and not a.output:
        sys.stdout.write(df.to_json(orient="records", lines=True))
        if len(df):
            sys.stdout.write("\n")
    else:
        write_table(df, a.output)
    if a.summary or a.plot:
        summ = video_summary(df, a.window)
        if a.summary:
            print(format_summary(summ) if len(summ) else "no video faces to summarise (label shares)",
                  file=sys.stderr)
        if a.plot:
            for path in plot_shares(summ, a.plot, a.window):
                print(f"plot: {path}", file=sys.stderr)
    errors = df[df["error"].str.len().astype(bool) & ~df["error"].str.startswith(NO_FACE)]
    n_sources = df["source"].nunique()
    if len(errors):
        print(f"{errors['source'].nunique()} of {n_sources} input(s) could not be read", file=sys.stderr)
    no_face = df[df["error"] == NO_FACE]
    if len(no_face):
        print(f"no face found in {len(no_face)} image(s)/frame(s)", file=sys.stderr)
    return 0 if n_read(df) else 1
