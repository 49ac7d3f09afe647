#!/usr/bin/env python
"""Evaluate a HyperDet model on a benchmark root: the same command as ``hyperdet eval``.

    python training/eval.py --model DIR_OR_HUB_ID --data ROOT [ROOT ...] --output_dir OUT \
        [--max_per_class N --seed 0] [--robustness] [--dtype auto|float32|bfloat16] [--batch_size 32]

Writes OUT/results.json (per generator: acc, real_acc, fake_acc, ap, n_real, n_fake, plus balanced_acc, auc,
acc_oracle, threshold_oracle, n_skipped; and a ``mean`` row), OUT/results.md (the paper's Tables 1-2),
OUT/scores.csv (path,generator,label,score with score = P(fake)), OUT/eval_info.json, OUT/per_generator.png and,
with --robustness, OUT/robustness.json, robustness.md, robustness_accuracy.png, robustness_ap.png.
All logic lives in ``hyperdet_hf.evaluation`` / ``hyperdet_hf.cli``.
"""

import sys

from hyperdet_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
