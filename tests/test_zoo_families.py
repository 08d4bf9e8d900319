"""The VGG, WideResNet and ResNeXt families (and the ResNets' published sizes).

Every deepest exit is the unchanged backbone, so its trainable parameter count must equal
an independent reference: torchvision's published ImageNet counts, or a closed form
written below in plain arithmetic from each paper's definition of the architecture (the
closed forms are themselves checked against the published counts and the papers'
rounded figures). Big models are only built and counted, never run; anything that runs
data is a narrow model with few classes.
"""

import keras
import numpy as np
import pytest
from keras import ops

from byot_keras import zoo

# ---------------------------------------------------------------------------------------
# Independent references: parameter counts from the architectures' definitions.
# Trainable parameters only: a BN layer has gamma and beta; its moving statistics are not
# trained.


def conv(kernel, cin, cout, groups=1, bias=False):
    return kernel * kernel * (cin // groups) * cout + (cout if bias else 0)


def bn(channels):
    return 2 * channels


def dense(cin, cout):
    return cin * cout + cout


VGG_CONVS = {"vgg11": (1, 1, 2, 2, 2), "vgg13": (2, 2, 2, 2, 2),
             "vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}


def vgg_count(convs_per_block, num_classes, channels=(64, 128, 256, 512, 512),
              hidden=None, final_map=1):
    """BN-VGG: 3x3 convs with bias, each + BN. hidden=None: the CIFAR classifier (Dense on
    the pooled map); else torchvision's Dense(flatten, hidden)-Dense(hidden)-Dense."""
    total, cin = 0, 3
    for cout, num_convs in zip(channels, convs_per_block):
        for _ in range(num_convs):
            total += conv(3, cin, cout, bias=True) + bn(cout)
            cin = cout
    if hidden is None:
        return total + dense(cin, num_classes)
    flat = final_map * final_map * cin
    return total + dense(flat, hidden) + dense(hidden, hidden) + dense(hidden, num_classes)


def wrn_count(blocks_per_group, stem, widths, num_classes):
    """Pre-activation WRN: BN-conv3x3-BN-conv3x3 blocks, 1x1 conv shortcut (no BN) where
    the width changes, final BN, Dense."""
    total, cin = conv(3, 3, stem), stem
    for width in widths:
        for _ in range(blocks_per_group):
            total += bn(cin) + conv(3, cin, width) + bn(width) + conv(3, width, width)
            if cin != width:
                total += conv(1, cin, width)
            cin = width
    return total + bn(cin) + dense(cin, num_classes)


def wrn_standard(depth, k, num_classes):
    return wrn_count((depth - 4) // 6, 16, (16 * k, 32 * k, 64 * k), num_classes)


def bottleneck_count(blocks, base, cardinality, base_width, num_classes, stem_kernel):
    """ResNet/ResNeXt with bottlenecks: stem conv + BN; per block 1x1 / grouped 3x3 / 1x1
    convs with BN, the grouped width being cardinality * base_width * (out / 256); a 1x1
    conv + BN shortcut where the shape changes; Dense."""
    total, cin = conv(stem_kernel, 3, base) + bn(base), base
    for stage, num_blocks in enumerate(blocks):
        out = 4 * base * 2 ** stage
        width = cardinality * base_width * out // 256
        for index in range(num_blocks):
            total += conv(1, cin, width) + bn(width)
            total += conv(3, width, width, groups=cardinality) + bn(width)
            total += conv(1, width, out) + bn(out)
            if cin != out or (stage > 0 and index == 0):
                total += conv(1, cin, out) + bn(out)
            cin = out
    return total + dense(cin, num_classes)


# torchvision's published counts (ImageNet, 224x224, 1000 classes).
TORCHVISION = {
    "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248, "resnext50_32x4d": 25_028_904,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
}


def test_closed_forms_reproduce_published_counts():
    """The closed forms are right: torchvision's exact counts, and the WRN / ResNeXt
    papers' CIFAR figures (CIFAR-10 heads; the papers give 0.1M-rounded values)."""
    for vgg, convs in VGG_CONVS.items():
        assert vgg_count(convs, 1000, hidden=4096, final_map=7) == TORCHVISION[f"{vgg}_bn"]
    for depth, key in ((50, "resnet50"), (101, "resnet101"), (152, "resnet152")):
        blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}[depth]
        assert bottleneck_count(blocks, 64, 1, 64, 1000, 7) == TORCHVISION[key]
    assert bottleneck_count((3, 4, 6, 3), 64, 32, 4, 1000, 7) == TORCHVISION["resnext50_32x4d"]
    papers = [
        (wrn_standard(16, 4, 10), 2.7), (wrn_standard(28, 10, 10), 36.5),
        (wrn_standard(40, 4, 10), 8.9), (wrn_standard(16, 8, 10), 11.0),
        (bottleneck_count((3, 3, 3), 64, 8, 64, 10, 3), 34.4),
        (bottleneck_count((3, 3, 3), 64, 16, 64, 10, 3), 68.1),
    ]
    for count, millions in papers:
        assert abs(count / 1e6 - millions) < 0.06, (count, millions)


# ---------------------------------------------------------------------------------------
# Parameter counts of the real models (built, never run).


def deepest_trainable_params(model) -> int:
    sub = model.exit_model(model.num_exits)
    return sum(int(np.prod(w.shape)) for w in sub.trainable_weights)


@pytest.fixture
def shapes_only(monkeypatch):
    """Counting needs the weights' shapes, not their values: He / Glorot initializers
    (VarianceScaling and its subclasses, every random initializer the zoo uses) give
    zeros, which skips drawing up to 144M random numbers per model."""
    monkeypatch.setattr(keras.initializers.VarianceScaling, "__call__",
                        lambda self, shape, dtype=None: ops.zeros(shape, dtype=dtype))


# exits=() builds the backbone without shallow heads: the deepest exit's sub-model is the
# same either way (test_tiny_* check that on small models), and building is faster.
IMAGENET = dict(input_shape=(224, 224, 3), num_classes=1000, exits=())


@pytest.mark.parametrize("name, kwargs, expected", [
    ("vgg11_byot", dict(classifier="imagenet"), TORCHVISION["vgg11_bn"]),
    ("vgg13_byot", dict(classifier="imagenet"), TORCHVISION["vgg13_bn"]),
    ("vgg16_byot", dict(classifier="auto"), TORCHVISION["vgg16_bn"]),
    ("vgg19_byot", dict(classifier="imagenet"), TORCHVISION["vgg19_bn"]),
    ("resnext50_32x4d_byot", dict(stem_type="imagenet"), TORCHVISION["resnext50_32x4d"]),
    ("resnet18_byot", dict(stem_type="imagenet"), TORCHVISION["resnet18"]),
    ("resnet34_byot", dict(stem_type="auto"), TORCHVISION["resnet34"]),
    ("resnet50_byot", dict(stem_type="imagenet"), TORCHVISION["resnet50"]),
    ("resnet101_byot", dict(stem_type="imagenet"), TORCHVISION["resnet101"]),
    ("resnet152_byot", dict(stem_type="imagenet"), TORCHVISION["resnet152"]),
])
def test_imagenet_deepest_exit_has_torchvision_parameter_count(name, kwargs, expected,
                                                               shapes_only):
    model = zoo.create_model(name, **IMAGENET, **kwargs)
    assert deepest_trainable_params(model) == expected


def test_cifar_resnet18_has_the_published_parameter_count(shapes_only):
    # The CIFAR ResNet-18 of the BYOT code / kuangliu's pytorch-cifar, 100 classes.
    model = zoo.resnet18_byot(num_classes=100, exits=())
    assert deepest_trainable_params(model) == 11_220_132


@pytest.mark.parametrize("name, reference, paper_millions", [
    ("vgg11_byot", vgg_count(VGG_CONVS["vgg11"], 100), None),
    ("vgg13_byot", vgg_count(VGG_CONVS["vgg13"], 100), None),
    ("vgg16_byot", vgg_count(VGG_CONVS["vgg16"], 100), None),
    ("vgg19_byot", vgg_count(VGG_CONVS["vgg19"], 100), None),
    ("wrn16_4_byot", wrn_standard(16, 4, 100), 2.7),
    ("wrn28_10_byot", wrn_standard(28, 10, 100), 36.5),
    # The paper's WideResNet44-8; by default 6 blocks per group (see wrn44_8_byot).
    ("wrn44_8_byot", wrn_count(6, 16, (128, 256, 512), 100), None),
    ("resnext29_8x64d_byot", bottleneck_count((3, 3, 3), 64, 8, 64, 100, 3), 34.4),
    ("resnext29_16x64d_byot", bottleneck_count((3, 3, 3), 64, 16, 64, 100, 3), 68.1),
])
def test_cifar_deepest_exit_matches_the_closed_form(name, reference, paper_millions,
                                                    shapes_only):
    model = zoo.create_model(name, num_classes=100, exits=())
    count = deepest_trainable_params(model)
    assert count == reference
    if paper_millions is not None:
        # Loose: the papers round to 0.1M and count CIFAR-10 heads (here 100 classes).
        assert count == pytest.approx(paper_millions * 1e6, rel=0.03)


# ---------------------------------------------------------------------------------------
# Tiny models: exits, outputs, the structure behind the counts. They are built with their
# shallow heads and still match the closed forms: the heads never leak into the deepest
# exit, which is why the counting tests above can build without them.


def run_exits(model, num_classes, input_shape=(32, 32, 3), batch=2):
    """Runs a batch eagerly; checks every exit's logits."""
    x = np.random.default_rng(0).uniform(size=(batch, *input_shape)).astype("float32")
    outputs = model(x, training=False)
    assert sorted(outputs) == model.exit_names
    for name in model.exit_names:
        logits = ops.convert_to_numpy(outputs[name])
        assert logits.shape == (batch, num_classes)
        assert np.all(np.isfinite(logits))


def test_tiny_vgg_cifar_exits():
    model = zoo.vgg19_byot(num_classes=3, width_multiplier=1 / 16)
    assert model.exit_names == [f"exit_{k}" for k in range(1, 6)]
    run_exits(model, 3)
    # Channels 64..512 / 16; the CIFAR classifier pools the 1x1 map.
    convs = VGG_CONVS["vgg19"]
    assert deepest_trainable_params(model) == vgg_count(convs, 3, (4, 8, 16, 32, 32))
    assert model.network.get_layer("block1_conv1").use_bias
    assert [model.network.get_layer(f"section_{k}").output.shape[1] for k in range(1, 6)] == [
        16, 8, 4, 2, 1]


def test_tiny_vgg_auto_classifier_switches_to_imagenet_above_64_px():
    shape = (96, 96, 3)
    model = zoo.vgg13_byot(num_classes=4, input_shape=shape, width_multiplier=1 / 16)
    run_exits(model, 4, shape)
    # torchvision's classifier: flatten the 3x3x32 map -> 256 -> 256 -> 4 (4096 / 16).
    assert deepest_trainable_params(model) == vgg_count(
        VGG_CONVS["vgg13"], 4, (4, 8, 16, 32, 32), hidden=256, final_map=3)
    features = [model.network.output[f"feature_{k}"].shape[-1] for k in range(1, 6)]
    assert features == [32, 32, 32, 32, 256]
    # The official objective's adaptation layers map the 32-d heads to the 256-d feature.
    assert [tuple(a.kernel.shape) for a in model.adapters] == [(32, 256)] * 3
    cifar = zoo.vgg13_byot(num_classes=4, input_shape=shape, width_multiplier=1 / 16,
                           classifier="cifar", exits=[2])
    assert cifar.network.output["feature_2"].shape[-1] == 32


def test_tiny_wide_resnet_exits_and_structure():
    model = zoo.create_model("wide_resnet_byot", depth=10, width=2, num_classes=3,
                             width_multiplier=0.5, dropout_rate=0.3)
    assert model.name == "wrn10_2_byot"
    assert model.exit_names == ["exit_1", "exit_2", "exit_3"]
    run_exits(model, 3)
    # Halved: stem 16 -> 8, groups 16k, 32k, 64k with k = 2 -> 16, 32, 64.
    assert deepest_trainable_params(model) == wrn_count(1, 8, (16, 32, 64), 3)
    layer_names = [layer.name for layer in model.network.layers]
    assert sum(n.endswith("_dropout") for n in layer_names) == 3
    assert not any("shortcut_bn" in n for n in layer_names)
    registered = zoo.wrn16_4_byot(num_classes=5, width_multiplier=1 / 8)
    run_exits(registered, 5)
    assert deepest_trainable_params(registered) == wrn_count(2, 2, (8, 16, 32), 5)


def test_wrn44_8_blocks_per_group_is_an_option(shapes_only):
    """44 is not 6n + 4: 6 blocks per group by default (WRN-40-8's structure, checked at
    full size above), 7 on request (WRN-46-8's)."""
    model = zoo.wrn44_8_byot(num_classes=3, width_multiplier=1 / 8, blocks_per_group=7,
                             exits=())
    assert model.name == "wrn44_8_byot"
    assert deepest_trainable_params(model) == wrn_count(7, 2, (16, 32, 64), 3)


def test_tiny_resnext29_exits_and_structure():
    model = zoo.resnext29_8x64d_byot(num_classes=3, width_multiplier=1 / 16)
    assert model.exit_names == ["exit_1", "exit_2", "exit_3"]
    run_exits(model, 3)
    # base 64 / 16 = 4 (stage outputs 16, 32, 64); the grouped width scales with it:
    # 8 groups x 4 channels in stage 1.
    assert deepest_trainable_params(model) == bottleneck_count((3, 3, 3), 4, 8, 64, 3, 3)
    grouped = model.network.get_layer("stage1_block1_conv2")
    assert (grouped.groups, grouped.filters) == (8, 32)
    assert model.network.output["feature_3"].shape[-1] == 64


def test_tiny_resnext50_exits_and_structure(shapes_only):
    # Built, not run: its blocks are resnet.py's, run by the ResNet tests and by ResNeXt-29.
    model = zoo.resnext50_32x4d_byot(num_classes=3, width_multiplier=0.25)
    assert model.exit_names == ["exit_1", "exit_2", "exit_3", "exit_4"]
    for k in range(1, 5):
        assert tuple(model.network.output[f"exit_{k}"].shape) == (None, 3)
    # base 16 (CIFAR stem at 32 px): 32 groups of one channel in stage 1, of 8 in stage 4.
    assert deepest_trainable_params(model) == bottleneck_count((3, 4, 6, 3), 16, 32, 4, 3, 3)
    grouped = model.network.get_layer("stage4_block1_conv2")
    assert (grouped.groups, grouped.filters) == (32, 256)


# ---------------------------------------------------------------------------------------
# Errors and the registry.


@pytest.mark.parametrize("name, kwargs, message", [
    ("wide_resnet_byot", dict(depth=27, width=2), r"6n \+ 4 .*10, 16, 22, 28.*got 27"),
    ("wide_resnet_byot", dict(depth=4, width=2), r"6n \+ 4 .*got 4"),
    ("wide_resnet_byot", dict(depth=16, width=0), r"integer >= 1; got 0"),
    ("vgg11_byot", dict(input_shape=(16, 16, 3)), r"too small for vgg11_byot.*at least 32"),
    ("vgg16_byot", dict(input_shape=(224, 31, 3), classifier="imagenet"), r"at least 32"),
    ("wrn16_4_byot", dict(input_shape=(3, 32, 3)), r"too small for wrn16_4_byot.*at least 4"),
    ("resnext29_8x64d_byot", dict(input_shape=(32, 3, 3)), r"at least 4 pixels"),
    ("resnext50_32x4d_byot", dict(input_shape=(28, 28, 3), stem_type="imagenet"),
     r"imagenet stem.*at least 32 pixels"),
    ("vgg19_byot", dict(classifier="tiny"), r"Valid classifiers: auto, cifar, imagenet"),
    ("resnext50_32x4d_byot", dict(width_multiplier=0.125), r"0 channels per group"),
    ("wide_resnet_byot", dict(depth=44, width=8), r"got 44\. .*use wrn44_8_byot"),
    ("wrn44_8_byot", dict(blocks_per_group=0), r"blocks_per_group must be an integer >= 1"),
    ("wrn16_4_byot", dict(exits=[3], width_multiplier=1 / 8), r"sections \[1, 2\]"),
    ("vgg13_byot", dict(exits=[5], width_multiplier=1 / 16), r"sections \[1, 2, 3, 4\]"),
    ("vgg11_byot", dict(weights="imagenet"), r"not a file nor a checkpoint of .*Registered for"),
    ("wrn16_4_byot", dict(num_classes=1), r"num_classes must be an integer >= 2"),
])
def test_bad_arguments_get_clear_errors(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        zoo.create_model(name, **kwargs)


@pytest.mark.parametrize("name, kwargs", [
    ("vgg11_byot", {}),
    ("wide_resnet_byot", dict(depth=10, width=1)),
    ("resnext29_16x64d_byot", {}),
])
def test_unknown_head_names_the_valid_heads(name, kwargs):
    with pytest.raises(ValueError, match=r"Unknown head 'dense'. Valid heads: sepconv, "
                                         r"bottleneck"):
        zoo.create_model(name, head="dense", width_multiplier=1 / 32, **kwargs)


def test_registry_lists_and_builds_the_new_families():
    new = {"vgg11_byot", "vgg13_byot", "vgg16_byot", "vgg19_byot", "wide_resnet_byot",
           "wrn16_4_byot", "wrn28_10_byot", "wrn44_8_byot", "resnext29_8x64d_byot",
           "resnext29_16x64d_byot", "resnext50_32x4d_byot"}
    assert new <= set(zoo.list_models())
    assert new <= set(zoo.__all__)
    assert zoo.list_models("wrn*_byot") == ["wrn16_4_byot", "wrn28_10_byot", "wrn44_8_byot"]
    # Each multi-exit model has its plain single-exit form under the name without _byot.
    assert zoo.list_models("wrn*") == ["wrn16_4", "wrn16_4_byot", "wrn28_10", "wrn28_10_byot",
                                       "wrn44_8", "wrn44_8_byot"]
    for name in new:
        builder = zoo.get_model_builder(name)
        assert builder is getattr(zoo, name)
        assert builder.__doc__ and "Returns" in builder.__doc__
    with pytest.raises(ValueError, match="Did you mean: .*wrn28_10_byot"):
        zoo.create_model("wrn28_10byot")
