"""Quantization-aware training (tfmot) of a trained multi-exit model, then per-exit and
cascade int8 TFLite files. Needs the extra: pip install -e ".[compress]".

    python recipes/qat.py --model_file runs/quickstart/model.keras --dataset digits \
        --output_dir tflite/quickstart_qat
"""

from byot_keras.compress.cli import run_qat

if __name__ == "__main__":
    run_qat()
