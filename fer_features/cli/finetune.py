"""``finetune``: train a backbone with a new head end to end, evaluated with classify's protocols and keys."""
from __future__ import annotations

import json

from fer_features.cli import _options as O
from fer_features.cli._print import print_result
from fer_features.evaluation.splits import LEAKY_PROTOCOL, PROTOCOLS
from fer_features.features.augment import AUGMENT_HELP, parse_augment
from fer_features.finetune import training as F  # called as F.save / F.run: tests replace them on the module
from fer_features.finetune.config import MODES
from fer_features.reporting.tables import write_report

DESCRIPTION = (
    "Train a backbone with a new classifier head end to end and evaluate it with the same "
    "protocols and result keys as classify (so compare --include can table both paths).\n"
    "modes: head = backbone frozen; top = head, then the last stage unfrozen at --fine-lr; "
    "full = head, then everything at --fine-lr; scratch = random weights, all trained.\n"
    "Augmentation is applied on the fly to training images only; a validation part of each "
    "fold's training part (by subject where ids exist) drives early stopping and model choice "
    "(the best validation epoch's weights are kept); with protocol official on a dataset with a "
    "validation split (FER2013: train Training, test PrivateTest) that split (PublicTest) does, "
    "and it is never trained on.")
EPILOG = ("example:\n  python -m fer_features finetune --data ../shared/datasets/jaffe --mode top "
          "--image-size 112 --protocol group-kfold --folds 5 --json")


def register(sub) -> None:
    p = sub.add_parser("finetune", formatter_class=O.Fmt, description=DESCRIPTION, epilog=EPILOG,
                       help="fine-tune a backbone end to end, with the same protocols")
    O.DATA.add(p, help="dataset folder or FER2013 CSV (as for extract)")
    O.FORMAT.add(p)
    O.SUBJECT_PATTERN.add(p, help="subject id of each image from its file name or relative path (as for extract): "
                          "makes protocol auto subject-grouped on data of your own")
    O.add_label_options(p)
    O.BACKBONE.add(p)
    O.WEIGHTS.add(p, help="imagenet or a weights file (scratch ignores it)")
    p.add_argument("--mode", default="top", choices=MODES, help="what is trained: see modes above")
    p.add_argument("--epochs", type=int, default=10, help="epochs per phase (head, then fine)")
    p.add_argument("--head-epochs", type=int, default=None,
                   help="top/full: epochs of the head phase before the fine one (default: --epochs)")
    O.BATCH_SIZE.add(p, help="images per training step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the head (and of scratch)")
    p.add_argument("--fine-lr", type=float, default=1e-4, help="Adam learning rate once layers are unfrozen")
    p.add_argument("--hidden", type=int, default=0, help="units of a dense hidden layer in the head (0: none)")
    p.add_argument("--dropout", type=float, default=0.2, help="dropout before the classifier layer")
    p.add_argument("--patience", type=int, default=3, help="early-stopping patience (epochs) on val accuracy")
    O.IMAGE_SIZE.add(p)
    O.AUGMENT.add(p, help=AUGMENT_HELP + "; 'none' to switch off")
    O.PREPROCESS.add(p, help="intensity normalisation (as for extract)")
    O.FACE_CROP.add(p, help="crop the face first (as for extract; none = whole image)")
    O.FACE_MARGIN.add(p, help="margin around the detected face, fraction of its size on each side (as for extract)")
    O.ALIGN.add(p)
    p.add_argument("--protocol", default="auto",
                   choices=[x for x in PROTOCOLS if x not in (LEAKY_PROTOCOL, "cross-dataset")],
                   help="auto = group-kfold with subject ids, else official with a split, else kfold")
    O.FOLDS.add(p)
    O.TEST_SIZE.add(p)
    O.TEST_SPLIT.add(p)
    O.SEED.add(p, help="seeds Keras, the splits and the augmentation")
    O.JSON.add(p, help="print ONE JSON object as the last line of stdout")
    O.REPORT_DIR.add(p)
    p.add_argument("--save", default=None, metavar="MODEL.keras",
                   help="instead of evaluating, train on all images (or the training split; a validation split "
                   "such as FER2013's PublicTest drives early stopping) and save the model")
    p.add_argument("--keep-model", default=None, metavar="MODEL.keras",
                   help="protocol official or holdout: also save the model that was tested (reusable as a frozen "
                   "backbone: extract --backbone MODEL.keras)")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="checkpoint every epoch (model, optimizer, early-stopping state) and every finished fold "
                   "under DIR/<name>-<run|save>-<key>/; the same command again resumes where it stopped "
                   "(--epochs may be raised to train longer; other settings make another checkpoint)")
    O.NO_PROGRESS.add(p)
    p.set_defaults(func=run)


def run(a) -> int:
    aug = None if a.augment == "none" else parse_augment(a.augment, seed=a.seed)
    cfg = F.FinetuneConfig(backbone=a.backbone, mode=a.mode, weights=a.weights, image_size=a.image_size,
                           epochs=a.epochs, head_epochs=a.head_epochs, batch_size=a.batch_size, lr=a.lr,
                           fine_lr=a.fine_lr, hidden=a.hidden,
                           dropout=a.dropout, patience=a.patience, augment=aug, preprocess=a.preprocess,
                           face_crop=a.face_crop, face_margin=a.face_margin, align=a.align, seed=a.seed)
    if a.save:
        path = F.save(a.save, a.data, cfg, format=a.format, progress=not a.no_progress,
                      subject_pattern=a.subject_pattern, checkpoint_dir=a.checkpoint_dir, **O.label_kwargs(a))
        print(f"model saved: {path}")
        return 0
    r = F.run(a.data, cfg, a.protocol, format=a.format, folds=a.folds, test_size=a.test_size,
              subject_pattern=a.subject_pattern, checkpoint_dir=a.checkpoint_dir, save_model=a.keep_model,
              test_split=a.test_split, progress=not a.no_progress, **O.label_kwargs(a))
    if a.report_dir:
        write_report([r], a.report_dir, title=f"{r['classifier']} on {a.data}")
    print_result(r)
    if a.json:
        print(json.dumps({k: v for k, v in r.items() if k != "training_history"}))
    return 0
