"""byot-keras: a Keras 3 model zoo of multi-exit CNNs trained by self-distillation."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
TFLITE = ["ai-edge-litert>=1.0"]
# Quantization-aware training and pruning (byot-qat, byot-prune): tfmot works on tf_keras
# (Keras 2) models only, and tf_keras must match TensorFlow's minor version.
COMPRESS = ["tf_keras~=2.21.0", "tensorflow-model-optimization>=0.8"]

setup(
    name="byot-keras",
    version="0.1.0",
    description=(
        "Multi-exit CNN model zoo (ResNet, VGG, WideResNet, ResNeXt) trained by "
        "self-distillation (BYOT) with plain keras model.fit"
    ),
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["byot_keras", "byot_keras.*"]),
    # The shipped checkpoints: zoo.<builder>(weights="cifar10").
    package_data={"byot_keras.zoo": ["weights/*.npz", "weights/checkpoints.json"]},
    install_requires=[
        # tensorflow-cpu satisfies the TensorFlow backend on machines without a GPU;
        # install "tensorflow" instead where you have one (extra [gpu]).
        "tensorflow-cpu>=2.16",
        "keras>=3.10",
        "tensorflow-datasets>=4.9",
        "absl-py>=1.0",
        "numpy>=1.26",
        # The embedded offline default data set (sklearn's digits) for the quickstart.
        "scikit-learn>=1.3",
        # Plots: the early-exit threshold sweep and the training report.
        "matplotlib>=3.7",
        # byot-train's event logs (keras.callbacks.TensorBoard).
        "tensorboard>=2.16",
    ],
    extras_require={
        "gpu": ["tensorflow[and-cuda]>=2.16"],
        "tflite": TFLITE,
        "compress": COMPRESS,
        # Training on the JAX backend (KERAS_BACKEND=jax); TensorFlow stays installed: the
        # tf.data pipeline feeds JAX, and export runs on TensorFlow. CI installs it in its
        # own virtual environment (.ci/run), for tests/test_jax_backend.py.
        "jax": ["jax[cpu]>=0.4.30"],
        # The suite covers every extra, two test processes at a time.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "ruff>=0.5", *TFLITE, *COMPRESS],
    },
    entry_points={
        "console_scripts": [
            "byot-quickstart=byot_keras.quickstart:run",
            "byot-export=byot_keras.export.cli:run",
            "byot-train=byot_keras.train.cli:run",
            "byot-eval=byot_keras.train.evaluate:run",
            "byot-reproduce=byot_keras.train.reproduce:run",
            "byot-qat=byot_keras.compress.cli:run_qat",
            "byot-prune=byot_keras.compress.cli:run_prune",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
