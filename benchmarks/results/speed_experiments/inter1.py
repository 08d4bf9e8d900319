"""Speed experiment (issue 6): plain.py with tf.config inter-op parallelism 1.
"""

import runpy
import sys

import tensorflow as tf

tf.config.threading.set_inter_op_parallelism_threads(1)
sys.argv = ["plain.py", "inter1.json"]
runpy.run_path(__file__.replace("inter1.py", "plain.py"), run_name="__main__")
