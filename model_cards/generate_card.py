#!/usr/bin/env python
"""Fill a Hub model card (README.md) for a HyperDet checkpoint from its run settings and eval results.

    python model_cards/generate_card.py --model runs/x/final --eval_results eval_out/results.json \
        [--run_config run.yaml] [--val_results val.json] [--eval_dataset "UnivFD test"] [--output CARD.md]

A thin wrapper over ``hyperdet_hf.model_card`` (the template ships inside the package).
"""

import sys

from hyperdet_hf.model_card import main

if __name__ == "__main__":
    sys.exit(main())
