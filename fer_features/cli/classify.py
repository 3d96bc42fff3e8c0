"""``classify``: evaluate one classifier preset on a feature cache; ``--save`` also trains and saves it."""
from __future__ import annotations

import json

from fer_features import evaluation as ev
from fer_features.apply.train import check_protocol, train_model
from fer_features.classify.presets import parse_overrides
from fer_features.cli import _options as O
from fer_features.cli._print import print_result
from fer_features.errors import ProtocolError
from fer_features.features.cache import load_cache
from fer_features.reporting.tables import write_report

DESCRIPTION = (
    "Evaluate a classifier preset on a feature cache with an explicit protocol, printing "
    "accuracy, macro-F1, per-class accuracy, the confusion matrix and fit/predict times.\n"
    "--save trains on all data (or the training split) and writes a skops model for predict.")
EPILOG = (
    "examples:\n"
    "  python -m fer_features classify --cache cache/jaffe__...h5 --clf cubic_svm --protocol loso --json\n"
    "  python -m fer_features classify --cache cache/fer2013__...h5 --clf linear_svm --protocol official\n"
    "  python -m fer_features classify --cache C.h5 --clf cubic_svm --set C=10 --save model.skops")


def register(sub) -> None:
    p = sub.add_parser("classify", formatter_class=O.Fmt, description=DESCRIPTION, epilog=EPILOG,
                       help="train and evaluate one classifier on a feature cache")
    O.add_eval_options(p, "cubic_svm")
    p.add_argument("--save", default=None, metavar="MODEL.skops", help="save the trained model (skops format)")
    O.REPORT_DIR.add(p)
    p.set_defaults(func=run)


def run(a) -> int:
    cache = load_cache(a.cache)
    test_cache = O.load_test_cache(a)
    overrides = parse_overrides(a.set)
    if a.save and test_cache is not None:
        raise ProtocolError("--save cannot be combined with --test-cache: a cross-dataset run only evaluates "
                            "(save a model trained on all of A with: classify --cache A.h5 --save M.skops)")
    if a.save and a.subject_norm != "none":
        raise ProtocolError("--save cannot be combined with --subject-norm: a saved model predicts single "
                            "images and has no subject to normalise by")
    aug = O.augment_kwargs(a)
    if a.save:
        check_protocol(a.protocol)
    with O.cluster(a) as cl:
        results, _ = ev.run(cache, [a.clf], a.protocol, folds=a.folds, test_size=a.test_size,
                            test_split=a.test_split, seed=a.seed, engine=a.engine, overrides=overrides,
                            pca=O.pca_arg(a.pca), n_jobs=a.n_jobs, subject_norm=a.subject_norm,
                            progress=not a.no_progress, test_cache=test_cache, search=O.search_kwargs(a),
                            cluster=cl, **aug)
    r = results[0]
    if a.save:
        saved = train_model(cache, a.clf, a.save, overrides=overrides, protocol=a.protocol, test_split=a.test_split,
                            engine=a.engine, pca=O.pca_arg(a.pca), seed=a.seed, search=O.search_kwargs(a),
                            progress=not a.no_progress, **aug)
        r["saved_model"], r["saved_model_trained_on"] = str(saved.path), saved.trained_on
    if a.report_dir:
        write_report(results, a.report_dir, title=f"{a.clf} on {O.on(cache, test_cache)}")
    print_result(r)
    if a.save:
        print(f"\nmodel saved: {r['saved_model']} (trained on {r['saved_model_trained_on']})")
    if a.json:
        print(json.dumps(r))
    return 0
