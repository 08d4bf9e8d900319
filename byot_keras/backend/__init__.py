"""What differs between Keras backends (TensorFlow, JAX), one small module per concern.

- :mod:`byot_keras.backend.compile_settings`: the compile settings a `.keras` file carries
  to another backend (`jit_compile` is this backend's default again on load).
- :mod:`byot_keras.backend.distribution`: data parallelism on JAX through
  `keras.distribution` (TensorFlow uses `tf.distribute`, byot_keras.train.distribute).

The losses, metrics and models themselves are written in `keras.ops` and run on any
backend; TensorFlow-only parts (TFLite export, QAT / pruning, tf.distribute strategies)
say so where they are.
"""
