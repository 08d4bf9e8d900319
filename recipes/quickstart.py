"""Train a small multi-exit ResNet with BYOT on the embedded digits set (offline).

    python recipes/quickstart.py --epochs 8 --output_dir runs/quickstart
"""

from byot_keras.quickstart import run

if __name__ == "__main__":
    run()
