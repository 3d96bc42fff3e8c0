"""``predict``: a saved model on images, folders, lists and videos; one row per face (``apply.predict``)."""
from __future__ import annotations

import sys

from fer_features.apply.predict import NO_FACE_POLICIES, predict
from fer_features.apply.tables import (
    check_output,
    format_summary,
    input_notes,
    n_read,
    plot_shares,
    video_summary,
    write_table,
)
from fer_features.cli import _options as O
from fer_features.errors import PredictError

DESCRIPTION = ("Detect every face with the model's own face-crop settings, embed each as in "
               "training and print one row per face: source, frame and time (videos), face "
               "index, box, detector score, label, probability per class, error (CSV, or "
               "--output FILE). Exit 1 when no input could be read.")


def register(sub) -> None:
    p = sub.add_parser("predict", formatter_class=O.Fmt, description=DESCRIPTION,
                       help="predict expressions in images and videos with a saved model")
    p.add_argument("--model", required=True, help="model saved by classify --save (.skops) or finetune --save (.keras)")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="images, videos, folders (searched recursively) or @LIST (a text file, one path a line)")
    p.add_argument("--from-list", default=None, metavar="FILE", help="also read input paths from FILE, one a line")
    p.add_argument("--output", "-o", default=None, metavar="FILE",
                   help="write the rows to FILE: .csv, .json, .jsonl or .parquet (needs pyarrow); default CSV "
                        "on stdout")
    O.JSON.add(p, help="JSON lines on stdout instead of CSV")
    O.BATCH_SIZE.add(p, help="faces per forward pass of the network")
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
    O.NO_PROGRESS.add(p)
    p.add_argument("--weights", default=None, help="override the backbone weights file recorded in the model")
    p.set_defaults(func=run)


def run(a) -> int:
    """Rows to stdout / --output; exit 1 when no input could be read at all."""
    if not a.inputs and not a.from_list:
        raise PredictError("no inputs given")
    if a.output:
        check_output(a.output)  # before the long run
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
    for note in input_notes(df):
        print(note, file=sys.stderr)
    return 0 if n_read(df) else 1
