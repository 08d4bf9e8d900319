"""Reproduce the BYOT paper's CIFAR-100 rows (baseline and BYOT) and compare with them.

    python recipes/reproduce.py --networks resnet18 --data_dir ~/tensorflow_datasets \
        --output_dir runs/reproduce --precision mixed_float16
    python recipes/reproduce.py --smoke --output_dir /tmp/reproduce_smoke
"""

from byot_keras.train.reproduce import run

if __name__ == "__main__":
    run()
