"""Evaluate a saved model (per-exit and ensemble accuracy, params, FLOPs) like byot-train.

    python recipes/evaluate.py --model_file runs/digits/model.keras --dataset digits
"""

from byot_keras.train.evaluate import run

if __name__ == "__main__":
    run()
