"""Magnitude pruning (tfmot) of a trained multi-exit model to a target sparsity, then
per-exit and cascade TFLite files with their gzip sizes. Needs the extra:
pip install -e ".[compress]".

    python recipes/prune.py --model_file runs/quickstart/model.keras --dataset digits \
        --target_sparsity 0.5 --output_dir tflite/quickstart_pruned
"""

from byot_keras.compress.cli import run_prune

if __name__ == "__main__":
    run_prune()
