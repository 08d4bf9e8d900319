"""Which Keras backend a command runs on.

Keras fixes its backend when it is first imported (from `KERAS_BACKEND`, else
`~/.keras/keras.json`), and every command imports it before it reads its flags. A
command given `--backend` that differs from the running one therefore starts itself
again with `KERAS_BACKEND` set (:func:`rerun_on_backend`).
"""

from __future__ import annotations

import importlib.util
import os
import sys

#: Backends the commands train on. TensorFlow stays installed for every one of them: the
#: tf.data pipeline feeds them all, and export runs on TensorFlow.
BACKENDS = ("tensorflow", "jax", "torch")
_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def check_backend(name: str, flag: str = "--backend") -> str:
    """`name` if it is a backend the commands train on and its package is installed;
    else a ValueError saying what to install.

    Example:
        >>> check_backend("tensorflow")
        'tensorflow'
    """
    if name not in BACKENDS:
        raise ValueError(f"{flag} {name}: valid backends are {', '.join(BACKENDS)}.")
    if importlib.util.find_spec(_PACKAGES[name]) is None:
        # No torch extra: PyPI's Linux torch wheel is the CUDA build (several GB with its
        # nvidia-* packages); users pick the build that fits their machine.
        how = ("install PyTorch (a CPU-only build will do) in this environment"
               if name == "torch" else
               f"install the project's extra: pip install 'byot-keras[{name}]'")
        raise ValueError(f"{flag} {name}: the {_PACKAGES[name]} package is not installed; "
                         f"{how}.")
    return name


def rerun_on_backend(name: str, module: str, argv: list[str] | None) -> None:
    """Returns if Keras already runs on `name`; otherwise replaces this process with
    `python -m module argv[1:]` under `KERAS_BACKEND=name` (never returns). With `argv`
    None (the command was called as a function, not run) a ValueError says to set
    KERAS_BACKEND instead."""
    import keras

    current = keras.backend.backend()
    if current == check_backend(name):
        return
    if argv is None:
        raise ValueError(f"--backend {name}: Keras already runs on {current} in this "
                         f"process; set KERAS_BACKEND={name} before Keras is imported.")
    sys.stdout.flush()
    sys.stderr.flush()
    environment = dict(os.environ, KERAS_BACKEND=name)
    os.execve(sys.executable, [sys.executable, "-m", module, *argv[1:]], environment)
