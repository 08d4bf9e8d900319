"""The AlexNet and DenseNet families, multi-exit (`*_byot`) and single-exit.

Every deepest exit is the unchanged backbone, so its trainable parameter count must equal
an independent reference: the published counts (torchvision's model table, the
pytorch-classification README, the DenseNet paper) and closed forms written below from
the architectures' definitions, themselves checked against those published figures. Big
models are only built and counted, never run; what runs data is narrow and shallow.
"""

import importlib
import math

import keras
import numpy as np
import pytest
from keras import ops

from byot_keras import zoo
from byot_keras.costs import count_macs
from byot_keras.export.cascade import exit_sections

# Registers the families (the package's __init__ may not import them yet). importlib, not
# `from byot_keras.zoo import alexnet`: that attribute may be the `alexnet` builder.
alexnet_module = importlib.import_module("byot_keras.networks.alexnet")
densenet_module = importlib.import_module("byot_keras.networks.densenet")

# ---------------------------------------------------------------------------------------
# Independent references. Trainable parameters only: a BN layer has gamma and beta.


def conv(kernel, cin, cout, bias=False):
    return kernel * kernel * cin * cout + (cout if bias else 0)


def bn(channels):
    return 2 * channels


def dense(cin, cout):
    return cin * cout + cout


ALEXNET_CONVS = ((11, 64), (5, 192), (3, 384), (3, 256), (3, 256))  # (kernel, channels)


def alexnet_count(num_classes, width=1.0, hidden=None, final_map=1):
    """Five biased convs; hidden=None: one Dense on the 256 features (CIFAR), else
    torchvision's Dense(flatten, hidden)-Dense(hidden, hidden)-Dense."""
    total, cin = 0, 3
    for kernel, channels in ALEXNET_CONVS:
        cout = round(channels * width)
        total += conv(kernel, cin, cout, bias=True)
        cin = cout
    if hidden is None:
        return total + dense(cin, num_classes)
    flat = final_map * final_map * cin
    return total + dense(flat, hidden) + dense(hidden, hidden) + dense(hidden, num_classes)


def alexnet_conv_sizes(size, conv1_padding, pool):
    """Output size of each conv, PyTorch's floor arithmetic (pools: stride 2, no padding)."""
    size = (size + 2 * conv1_padding - 11) // 4 + 1
    sizes = [size]
    size = (size - pool) // 2 + 1
    sizes.append(size)  # conv2 keeps the size
    size = (size - pool) // 2 + 1
    return sizes + [size] * 3


def alexnet_macs(size, conv1_padding, pool, num_classes):
    """Multiply-accumulates of the convs and of a single Dense on the pooled features."""
    total, cin = 0, 3
    for (kernel, cout), out in zip(ALEXNET_CONVS, alexnet_conv_sizes(size, conv1_padding,
                                                                     pool)):
        total += out * out * kernel * kernel * cin * cout
        cin = cout
    return total + cin * num_classes


def densenet_count(layers_per_block, growth, num_classes, stem="cifar", bottleneck=True,
                   compression=0.5):
    """2k-channel stem (CIFAR: bare 3x3 conv; ImageNet: 7x7 conv + BN); dense layers
    BN-conv1x1(4k)-BN-conv3x3(k) (or BN-conv3x3(k)); transitions BN-conv1x1 keeping
    floor(c * compression); final BN; Dense."""
    cin = 2 * growth
    total = conv(3, 3, cin) if stem == "cifar" else conv(7, 3, cin) + bn(cin)
    for block, num_layers in enumerate(layers_per_block):
        for _ in range(num_layers):
            if bottleneck:
                total += bn(cin) + conv(1, cin, 4 * growth) + bn(4 * growth)
                total += conv(3, 4 * growth, growth)
            else:
                total += bn(cin) + conv(3, cin, growth)
            cin += growth
        if block < len(layers_per_block) - 1:
            out = math.floor(cin * compression)
            total += bn(cin) + conv(1, cin, out)
            cin = out
    return total + bn(cin) + dense(cin, num_classes)


BC100 = (16, 16, 16)
D121 = (6, 12, 24, 16)

# Published: torchvision's model table (ImageNet, 224 px, 1000 classes) and
# pytorch-classification's README (CIFAR-10 heads, millions rounded to 0.01).
TORCHVISION = {"alexnet": 61_100_840, "densenet121": 7_978_856}
TORCHVISION_GMACS = {"alexnet": 0.71, "densenet121": 2.83}
PYTORCH_CLASSIFICATION_MILLIONS = {"alexnet": 2.47, "densenet-bc-100-12": 0.77,
                                   "densenet-bc-190-40": 25.62}


def test_closed_forms_reproduce_published_counts():
    assert alexnet_count(1000, hidden=4096, final_map=6) == TORCHVISION["alexnet"]
    assert densenet_count(D121, 32, 1000, stem="imagenet") == TORCHVISION["densenet121"]
    # CIFAR-10 heads, as the README counts them.
    readme = {"alexnet": alexnet_count(10),
              "densenet-bc-100-12": densenet_count(BC100, 12, 10),
              "densenet-bc-190-40": densenet_count((31, 31, 31), 40, 10)}
    for key, count in readme.items():
        assert round(count / 1e6, 2) == PYTORCH_CLASSIFICATION_MILLIONS[key], (key, count)
    # The DenseNet paper's Table 2 (0.1M-rounded): DenseNet-BC (L=100, k=12) 0.8M,
    # (L=250, k=24) 15.3M, (L=190, k=40) 25.6M.
    assert round(densenet_count(BC100, 12, 10) / 1e6, 1) == 0.8
    assert round(densenet_count((41, 41, 41), 24, 10) / 1e6, 1) == 15.3
    assert round(densenet_count((31, 31, 31), 40, 10) / 1e6, 1) == 25.6
    # torchvision's GFLOPS column counts multiply-accumulates of convs and Dense layers.
    assert alexnet_macs(224, 2, 3, 0) + 9216 * 4096 + 4096 * 4096 + 4096 * 1000 == \
        pytest.approx(TORCHVISION_GMACS["alexnet"] * 1e9, rel=0.01)


# ---------------------------------------------------------------------------------------
# Parameter counts and costs of the full-size models (built, never run).


def deepest_trainable_params(model) -> int:
    sub = model.exit_model(model.num_exits)
    return sum(int(np.prod(w.shape)) for w in sub.trainable_weights)


@pytest.fixture
def shapes_only(monkeypatch):
    """Counting needs the weights' shapes, not their values: the He / Glorot initializers
    (VarianceScaling and subclasses) give zeros, skipping up to 61M random draws."""
    monkeypatch.setattr(keras.initializers.VarianceScaling, "__call__",
                        lambda self, shape, dtype=None: ops.zeros(shape, dtype=dtype))


IMAGENET = dict(input_shape=(224, 224, 3), num_classes=1000)


@pytest.mark.parametrize("name, kwargs, expected, gmacs", [
    # The single-exit names build the bare backbones (exit_1 is the deepest exit).
    ("alexnet", dict(num_classes=10), 2_472_266, None),
    ("alexnet", IMAGENET, TORCHVISION["alexnet"], TORCHVISION_GMACS["alexnet"]),
    ("densenet_bc100_k12", dict(num_classes=100), densenet_count(BC100, 12, 100), None),
])
def test_deepest_exit_has_the_published_parameter_count(name, kwargs, expected, gmacs,
                                                        shapes_only):
    model = zoo.create_model(name, **kwargs)
    assert model.exit_names == ["exit_1"]
    assert deepest_trainable_params(model) == expected
    if gmacs is not None:
        costs = model.exit_costs()
        assert costs[-1]["macs"] == pytest.approx(gmacs * 1e9, rel=0.01)


def test_densenet_bc100_has_800032_parameters_with_100_classes():
    # 769,162 with 10 classes (0.77M in pytorch-classification's README); the
    # 100-class head adds 342 x 90 + 90.
    assert densenet_count(BC100, 12, 100) == 800_032
    assert densenet_count(BC100, 12, 100) - densenet_count(BC100, 12, 10) == 342 * 90 + 90


def test_cifar_alexnet_costs_match_the_closed_form(shapes_only):
    model = zoo.create_model("alexnet", num_classes=100)
    [costs] = model.exit_costs()
    assert costs["trainable_params"] == alexnet_count(100) == 2_495_396
    assert costs["macs"] == alexnet_macs(32, 5, 2, 100) == 14_980_096
    assert costs["cascade_macs"] == costs["macs"]
    assert costs["flops"] == 2 * costs["macs"]


# ---------------------------------------------------------------------------------------
# Narrow multi-exit models: outputs, exits at the expected sections, costs.


def run_exits(model, num_classes, input_shape=(32, 32, 3), batch=2):
    """Runs a batch eagerly; checks the output keys and every exit's logits."""
    x = np.random.default_rng(0).uniform(size=(batch, *input_shape)).astype("float32")
    outputs = model(x, training=False)
    assert sorted(outputs) == model.exit_names
    for name in model.exit_names:
        logits = ops.convert_to_numpy(outputs[name])
        assert logits.shape == (batch, num_classes)
        assert np.all(np.isfinite(logits))
    return outputs


def layer_names(sub_model):
    return {layer.name for layer in sub_model.layers}


def check_costs(model, deepest_params):
    costs = model.exit_costs()
    macs = [c["macs"] for c in costs]
    cascade = [c["cascade_macs"] for c in costs]
    assert all(a < b for a, b in zip(macs, macs[1:])), macs
    assert all(a < b for a, b in zip(cascade, cascade[1:])), cascade
    assert cascade[0] == macs[0] and cascade[-1] > macs[-1]  # earlier heads on top
    assert costs[-1]["trainable_params"] == deepest_params
    assert all(c["flops"] == 2 * c["macs"] for c in costs)


def test_tiny_alexnet_exits_follow_the_pooling_blocks():
    model = zoo.create_model("alexnet_byot", num_classes=3, width_multiplier=1 / 8)
    assert model.exit_names == ["exit_1", "exit_2", "exit_3"]
    run_exits(model, 3)
    network = model.network
    # pytorch-classification's geometry at 32 px: conv1 8x8, then pools to 4, 2, 1.
    assert network.get_layer("conv1").output.shape[1:] == (8, 8, 8)
    assert [network.get_layer(f"section_{k}").output.shape[1:] for k in (1, 2, 3)] == [
        (4, 4, 8), (2, 2, 24), (1, 1, 32)]
    assert [network.output[f"feature_{k}"].shape[-1] for k in (1, 2, 3)] == [32, 32, 32]
    # Exit 1 sits after pooling block 1, exit 2 after block 2: neither needs later convs.
    first, second = layer_names(model.exit_model(1)), layer_names(model.exit_model(2))
    assert {"conv1", "pool1"} <= first and "conv2" not in first
    assert not any(n.startswith("exit_2") for n in first)
    assert {"conv2", "pool2"} <= second and "conv3" not in second
    assert not any("head" in n for n in layer_names(model.exit_model(3)))
    assert exit_sections(model) == [1, 2, 3]  # where the TFLite cascade cuts the trunk
    check_costs(model, alexnet_count(3, width=1 / 8))


def test_tiny_alexnet_imagenet_variant_above_64_px(shapes_only):
    shape = (96, 96, 3)
    model = zoo.create_model("alexnet_byot", num_classes=4, input_shape=shape,
                             width_multiplier=1 / 16, exits=[2])
    assert model.exit_names == ["exit_1", "exit_2"]
    network = model.network
    # torchvision's geometry: conv1 (96 + 4 - 11) // 4 + 1 = 23; 3x3/2 pools: 11, 5, 2.
    sizes = alexnet_conv_sizes(96, 2, 3)
    assert network.get_layer("conv1").output.shape[1] == sizes[0] == 23
    assert [network.get_layer(f"section_{k}").output.shape[1] for k in (1, 2, 3)] == [
        11, 5, 2]
    # Classifier: flatten 2x2x16 -> 256 -> 256 -> 4 (4096 / 16), dropout before each.
    assert deepest_trainable_params(model) == alexnet_count(4, 1 / 16, hidden=256, final_map=2)
    assert network.output["feature_2"].shape[-1] == 256
    assert sum(layer.name.endswith("_dropout") for layer in network.layers) == 2


def test_single_exit_alexnet_is_the_byot_backbone_and_trains():
    single = zoo.create_model("alexnet", num_classes=3, width_multiplier=1 / 8)
    multi = zoo.create_model("alexnet_byot", num_classes=3, width_multiplier=1 / 8)
    assert single.name == "alexnet" and single.exit_names == ["exit_1"]
    assert sorted(single.network.output) == ["exit_1", "feature_1"]
    assert deepest_trainable_params(single) == deepest_trainable_params(multi)
    assert not any("head" in layer.name for layer in single.network.layers)
    single.compile(optimizer=keras.optimizers.SGD(0.01))
    x = np.random.default_rng(1).uniform(size=(4, 32, 32, 3)).astype("float32")
    history = single.fit(x, np.array([0, 1, 2, 0]), epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert history.history["kd_loss"] == [0.0]  # nothing to distil with one exit


def test_tiny_densenet_bc_exits_follow_the_dense_blocks():
    model = zoo.create_model("densenet_byot", depth=16, growth_rate=4, num_classes=3)
    assert model.name == "densenet_bc16_k4_byot"
    assert model.exit_names == ["exit_1", "exit_2", "exit_3"]
    run_exits(model, 3)
    network = model.network
    # Stem 2k = 8; 2 layers per block add 8; transitions halve (floor) the channels.
    assert [network.get_layer(f"section_{k}").output.shape[1:] for k in (1, 2, 3)] == [
        (32, 32, 16), (16, 16, 16), (8, 8, 16)]
    assert network.get_layer("block2_layer1_conv1").output.shape[-1] == 16  # 4k bottleneck
    first = layer_names(model.exit_model(1))
    assert "block1_layer2_concat" in first
    assert not any(n.startswith(("transition1", "block2")) for n in first)
    assert exit_sections(model) == [1, 2, 3]
    check_costs(model, densenet_count((2, 2, 2), 4, 3))


def test_densenet_without_bottleneck_or_compression():
    model = zoo.create_model("densenet_byot", depth=10, growth_rate=4, bottleneck=False,
                             compression=1.0, num_classes=5, exits=[1], dropout_rate=0.2)
    assert model.name == "densenet10_k4_byot"
    assert model.exit_names == ["exit_1", "exit_2"]
    run_exits(model, 5)
    assert deepest_trainable_params(model) == densenet_count(
        (2, 2, 2), 4, 5, bottleneck=False, compression=1)
    names = [layer.name for layer in model.network.layers]
    assert "block1_layer1_conv2" not in names and sum(n.endswith("_dropout") for n in names) == 6


def test_densenet121_byot_at_224_px_is_torchvision_with_four_exits(shapes_only):
    # Built, not run (its layers are the ones run above).
    model = zoo.create_model("densenet121_byot", **IMAGENET)
    assert model.exit_names == [f"exit_{k}" for k in range(1, 5)]
    # ImageNet stem: 224 -> 56; blocks at 56, 28, 14, 7 with 64 + 6*32 = 256, 128 + 384
    # = 512, 256 + 768 = 1024 and 512 + 512 = 1024 channels.
    assert [model.network.get_layer(f"section_{k}").output.shape[1:] for k in range(1, 5)] \
        == [(56, 56, 256), (28, 28, 512), (14, 14, 1024), (7, 7, 1024)]
    for k in range(1, 5):
        assert tuple(model.network.output[f"exit_{k}"].shape) == (None, 1000)
    assert model.network.get_layer("stem_conv").kernel_size == (7, 7)
    deepest = model.exit_model(4)
    assert not any("head" in layer.name for layer in deepest.layers)
    assert sum(int(np.prod(w.shape)) for w in deepest.trainable_weights) == \
        TORCHVISION["densenet121"]
    assert count_macs(deepest) == pytest.approx(TORCHVISION_GMACS["densenet121"] * 1e9,
                                                rel=0.01)


# ---------------------------------------------------------------------------------------
# Errors and the registry.


@pytest.mark.parametrize("name, kwargs, message", [
    ("densenet_byot", dict(depth=99, growth_rate=12), r"6n \+ 4 .*100.*got 99"),
    ("densenet_byot", dict(depth=4, growth_rate=12), r"6n \+ 4 with n >= 1.*got 4"),
    ("densenet_byot", dict(depth=41, growth_rate=12, bottleneck=False),
     r"3n \+ 4 .*without bottleneck.*got 41"),
    ("densenet_byot", dict(depth=40.0, growth_rate=12), r"got 40\.0"),
    ("densenet_byot", dict(depth=100, growth_rate=0), r"growth_rate must be an integer >= 1"),
    ("densenet_byot", dict(depth=100, growth_rate=12, compression=0),
     r"compression must be in \(0, 1\]"),
    ("densenet_byot", dict(depth=100, growth_rate=12, dropout_rate=1.0),
     r"dropout_rate must be in \[0, 1\)"),
    ("densenet_byot", dict(depth=10, growth_rate=2, exits=[3]), r"sections \[1, 2\]"),
    ("densenet121_byot", dict(input_shape=(4, 4, 3)), r"too small .*at least 8 pixels"),
    ("densenet121", dict(input_shape=(31, 31, 3), stem_type="imagenet"),
     r"imagenet stem.*at least 32"),
    ("densenet121", dict(exits=[1]), r"densenet121 is the single-exit .*densenet121_byot"),
    ("alexnet", dict(exits=[1, 2]), r"alexnet is the single-exit .*alexnet_byot\(exits"),
    ("alexnet_byot", dict(input_shape=(28, 28, 3)), r"cifar variant.*at least 29 pixels"),
    ("alexnet_byot", dict(input_shape=(224, 62, 3), variant="imagenet"),
     r"imagenet variant.*at least 63 pixels"),
    ("alexnet_byot", dict(variant="tiny"), r"Valid variants: auto, cifar, imagenet"),
    ("alexnet_byot", dict(exits=[3]), r"sections \[1, 2\]"),
    ("alexnet_byot", dict(weights="imagenet"), r"not a file nor a checkpoint of .*Registered for"),
    ("alexnet", dict(num_classes=1), r"num_classes must be an integer >= 2"),
    ("alexnet_byot", dict(head="dense"), r"Valid heads: sepconv, bottleneck"),
])
def test_bad_arguments_get_clear_errors(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.create_model(name, **kwargs)


def test_minimum_input_sizes_are_the_smallest_that_work():
    # torchvision documents min_size 63 for AlexNet; pytorch-classification's geometry
    # reaches a 1x1 last map from 29 px.
    def last_pooled(size, padding, pool):
        return (alexnet_conv_sizes(size, padding, pool)[-1] - pool) // 2 + 1

    for variant, (padding, pool), minimum in (("cifar", (5, 2), 29), ("imagenet", (2, 3), 63)):
        assert alexnet_module.minimum_input_size(variant) == minimum
        assert last_pooled(minimum, padding, pool) == 1
        assert last_pooled(minimum - 1, padding, pool) < 1


def test_registry_lists_the_new_names():
    names = {"alexnet", "alexnet_byot", "densenet_byot", "densenet_bc100_k12",
             "densenet_bc100_k12_byot", "densenet121", "densenet121_byot"}
    assert names <= set(zoo.list_models())
    assert zoo.list_models("densenet*") == sorted(n for n in names if "densenet" in n)
    for name in names:
        builder = zoo.get_model_builder(name)
        assert builder.__name__ == name
        assert builder.__doc__ and "Returns" in builder.__doc__ and "Example" in builder.__doc__
    assert zoo.get_model_builder("densenet121_byot").network_builder is (
        densenet_module.densenet121_byot)
    assert zoo.get_model_builder("alexnet").network_builder is alexnet_module.alexnet
