"""Train a multi-exit model with a paper's recipe; resumable, reports at the end.

    python recipes/train.py --preset byot_cifar --data_dir ~/tensorflow_datasets \
        --output_dir runs/byot_cifar100_r18
    python recipes/train.py --preset digits_quick --output_dir runs/digits   # offline
"""

from byot_keras.train.cli import run

if __name__ == "__main__":
    run()
