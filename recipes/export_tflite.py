"""Convert a trained multi-exit model to per-exit TFLite files and the cascade.

    python recipes/export_tflite.py --model_file runs/quickstart/model.keras \
        --dataset digits --quantizations float32,int8
"""

from byot_keras.export.cli import run

if __name__ == "__main__":
    run()
