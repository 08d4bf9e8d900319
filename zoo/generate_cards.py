"""Regenerates the model cards: zoo/<name>.md per registered model, zoo/README.md (the
index) and zoo/facts.json (what building each model measured).

    python zoo/generate_cards.py                   # builds every model (minutes)
    python zoo/generate_cards.py --reuse_facts     # re-renders; builds only new models
    python zoo/generate_cards.py --reuse_facts --rebuild resnet18_byot,vgg11_byot

The logic lives in `zoo/cards.py`; tests/test_model_cards.py checks the result.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run as a file, the script's folder (zoo/) is on sys.path, not the repository.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", os.path.dirname(os.path.abspath(__file__)),
                    "Folder of the cards (default: this zoo/ folder).")
flags.DEFINE_bool("reuse_facts", False, "Keep the facts already in facts.json; build only "
                  "models missing from it and those in --rebuild.")
flags.DEFINE_list("rebuild", [], "With --reuse_facts: models to build again anyway.")


def main(argv):
    del argv
    from zoo import cards

    written = cards.write_cards(FLAGS.out_dir, reuse_facts=FLAGS.reuse_facts,
                                rebuild=FLAGS.rebuild, log=lambda message: print(message,
                                                                                 flush=True))
    print(f"wrote {len(written)} files to {FLAGS.out_dir}")


if __name__ == "__main__":
    app.run(main)
