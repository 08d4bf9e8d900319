"""One short training on real images: a few thousand offline CIFAR-10 pictures.

Budget-sized (about a minute on 2 cores): the loss must fall and every exit must beat
chance (10 %) clearly on 1,000 held-out test images.
"""

import keras
import numpy as np

from byot_keras import zoo

CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], "float32")
CIFAR_STD = np.array([0.2023, 0.1994, 0.2010], "float32")


def _load(data_dir, split):
    import tensorflow_datasets as tfds

    ds = tfds.load("cifar10", split=split, as_supervised=True, data_dir=data_dir,
                   download=False)
    images, labels = zip(*tfds.as_numpy(ds))
    images = (np.stack(images).astype("float32") / 255.0 - CIFAR_MEAN) / CIFAR_STD
    return images, np.array(labels, "int32")


def test_short_cifar10_training_every_exit_beats_chance(cifar10_dir):
    x_train, y_train = _load(cifar10_dir, "train[:2500]")
    x_test, y_test = _load(cifar10_dir, "test[:1000]")
    keras.utils.set_random_seed(0)
    model = zoo.resnet18_byot(num_classes=10, width_multiplier=0.25)
    epochs, batch = 3, 64
    steps = epochs * int(np.ceil(len(x_train) / batch))
    model.compile(optimizer=keras.optimizers.SGD(
        keras.optimizers.schedules.CosineDecay(0.05, steps), momentum=0.9))
    history = model.fit(x_train, y_train, batch_size=batch, epochs=epochs, verbose=0)
    losses = history.history["loss"]
    print("training loss per epoch:", losses)
    assert losses[-1] < 0.85 * losses[0], losses
    result = model.evaluate(x_test, y_test, batch_size=250, verbose=0, return_dict=True)
    accuracies = {name: result[f"{name}_accuracy"] for name in model.exit_names}
    print("CIFAR-10 test accuracy per exit:", accuracies, "ensemble:",
          result["ensemble_accuracy"])
    # 1,000 test images: chance is 10 % +- 0.95 % (one standard deviation), so 15 % is
    # five standard deviations above it.
    for name, accuracy in accuracies.items():
        assert accuracy > 0.15, (name, accuracies)
    assert accuracies[model.exit_names[-1]] > 0.25, accuracies
    assert result["ensemble_accuracy"] > 0.25, result
