"""byot-keras: a Keras 3 model zoo of multi-exit CNNs trained by self-distillation."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent

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
    ],
    extras_require={
        "gpu": ["tensorflow[and-cuda]>=2.16"],
        "tflite": ["ai-edge-litert>=1.0"],
        "test": ["pytest>=8", "ruff>=0.5"],
    },
    entry_points={
        "console_scripts": [
            "byot-quickstart=byot_keras.quickstart:run",
            "byot-export=byot_keras.export.cli:run",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
