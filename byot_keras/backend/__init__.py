"""What differs between Keras backends (TensorFlow, JAX, torch), one small module per
concern.

- :mod:`byot_keras.backend.compile_settings`: the compile settings a `.keras` file carries
  to another backend (`jit_compile` is this backend's default again on load; an optimizer
  saved on torch is read as its public Keras class).
- :mod:`byot_keras.backend.distribution`: data parallelism on JAX through
  `keras.distribution` (TensorFlow uses `tf.distribute`, byot_keras.train.distribute;
  Keras has none on torch).
- :mod:`byot_keras.backend.export`: the backends the TFLite export runs on (not torch).
- :mod:`byot_keras.backend.process`: which backend a command runs on (`--backend`).

The losses, metrics and models themselves are written in `keras.ops` and run on any
backend; TensorFlow-only parts (TFLite export, QAT / pruning, tf.distribute strategies)
say so where they are.
"""
