"""The backbone registry: every pretrained model sweeper can cut and fine-tune, declared once.

Each entry carries what a trial needs to build it (the Keras constructor and its arguments),
how its inputs are scaled, its input sizes, the layers it can be cut at with their channels,
and the names of its official ImageNet weight files. Importing this module does not import
TensorFlow, so the driver and `sweeper backbones` stay fast.

A spec may declare models of its own (`backbones:`, a `.keras` file or a factory function) and
name KerasHub presets (`hub:<preset>`): `declared` makes them known to `get_backbone` for as long
as a command or a trial runs that spec.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import math
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import SpecError
from .hyperparameters import FULL

# How a backbone expects its 0-255 RGB input to be scaled (keras.applications' modes):
# tf = [-1, 1]; caffe = BGR minus the ImageNet mean; torch = [0, 1] standardised by the ImageNet
# mean and deviation; unit = [0, 1]; none = the model does it (its first layers rescale).
PREPROCESS_MODES = ("tf", "caffe", "torch", "unit", "none")
HUB_PREFIX = "hub:"  # `backbone: hub:<preset>` names a KerasHub preset (`pip install 'sweeper-tune[hub]'`)


@dataclass(frozen=True)
class Backbone:
    name: str
    constructor: str  # a keras.applications class name, or "simple_cnn"
    preprocess: str  # one of PREPROCESS_MODES
    default_size: int
    min_size: int
    # Named layers at stage boundaries, shallow to deep; the last is the model's output, given as
    # FULL where Keras leaves that layer's name to its session counter ("activation_17").
    cut_points: tuple[str, ...]
    # The channels of each cut point's output: a frozen, average-pooled feature holds that many
    # floats per image, so the disk a sweep needs is known without building the model.
    channels: tuple[int, ...] = ()
    weight_files: tuple[str, ...] = ()  # official no-top files, preferred first; "{size}" is filled in
    kwargs: dict[str, Any] = field(default_factory=dict)
    # How it divides into blocks, for `unfreeze: {blocks: N}`: a regex matched at the start of each
    # layer's name, whose first group names the layer's block (a layer it does not match is in the
    # block before it); or, with `blocks_end`, matching the whole name of each block's last layer
    # (Inception's concatenations, NASNet's cells). "" for a network without named blocks.
    blocks: str = ""
    blocks_end: bool = False
    pretrained: bool = True  # False: no ImageNet weights exist; always trained from scratch
    # From Keras's table (keras.io/api/applications; MobileNetV3: its module's docstring), for the
    # whole classifier: millions of parameters and ImageNet top-1 (%); None where it has no row.
    params_m: float | None = None
    top1: float | None = None
    # A spec's own model (`backbones:`): a `.keras` file, or a factory "module:function" (the module a
    # dotted name or a `.py` file) called with input_shape=(size, size, 3). Its weights are its own.
    file: str | None = None
    factory: str | None = None
    # A KerasHub preset (`backbone: hub:<preset>`): a local preset folder, or a handle KerasHub
    # downloads. Its inputs are scaled as the preset's image converter says ("affine").
    hub: str | None = None

    @property
    def own(self) -> bool:
        """Not a registry entry: built from the spec's own file, factory or KerasHub preset."""
        return bool(self.file or self.factory or self.hub)

    def source(self) -> Path:
        """An own model's file (the `.keras`, the factory's module, a preset's weights): what its
        frozen features depend on."""
        if self.hub:
            return Path(self.hub) / "model.weights.h5"
        if self.file:
            return Path(self.file)
        module = self.factory.rpartition(":")[0]
        if module.endswith(".py"):
            return Path(module)
        found = importlib.util.find_spec(module)
        return Path(found.origin) if found and found.origin else Path(module)

    def identity(self) -> str:
        """What names this network in keys of measurements kept across sweeps: the registry name, or
        for an own model its name and file as they are now (a changed file is another network)."""
        if not self.own:
            return self.name
        source = self.source()
        stat = source.stat() if source.is_file() else None
        return f"{self.name}:{source}:{stat.st_size}:{stat.st_mtime_ns}" if stat else f"{self.name}:{source}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Backbone:
        """The inverse of `to_dict`, from JSON (whose lists were tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @property
    def output_layer(self) -> str:
        return self.cut_points[-1]

    def channels_at(self, cut: str) -> int:
        return self.channels[self.cut_points.index(self.output_layer if cut == FULL else cut)]

    def weight_file_names(self, image_size: int) -> list[str]:
        """Candidate file names, best first: the file for this input size, then the 224 one.

        No-top convolutional weights do not depend on the input size, so the 224 file serves any.
        """
        names: list[str] = []
        for pattern in self.weight_files:
            for size in (image_size, 224):
                name = pattern.format(size=size)
                if name not in names:
                    names.append(name)
        return names


def _mobilenet_v2(alpha: float) -> Backbone:
    return Backbone(
        name=f"mobilenet_v2_{alpha}",
        constructor="MobileNetV2",
        kwargs={"alpha": alpha},
        preprocess="tf",
        default_size=224,
        min_size=32,
        cut_points=("block_6_expand_relu", "block_13_expand_relu", "block_16_project_BN", "out_relu"),
        channels={0.35: (96, 192, 112, 1280), 0.5: (96, 288, 160, 1280), 0.75: (144, 432, 240, 1280),
                  1.0: (192, 576, 320, 1280), 1.3: (240, 768, 416, 1664), 1.4: (288, 816, 448, 1792)}[alpha],
        weight_files=(f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{{size}}_no_top.h5",),
        blocks=r"(block_\d+|expanded_conv)_",
        **({"params_m": 3.5, "top1": 71.3} if alpha == 1.0 else {}),
    )


def _mobilenet(alpha: float) -> Backbone:
    alpha_text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[alpha]
    return Backbone(
        name=f"mobilenet_{alpha}",
        constructor="MobileNet",
        kwargs={"alpha": alpha},
        preprocess="tf",
        default_size=224,
        min_size=32,
        cut_points=("conv_pw_5_relu", "conv_pw_11_relu", "conv_pw_13_relu"),
        channels=tuple(int(c * alpha) for c in (256, 512, 1024)),
        weight_files=(f"mobilenet_{alpha_text}_{{size}}_tf_no_top.h5",),
        blocks=r"conv_(?:pad|dw|pw)_(\d+)",
        **({"params_m": 4.3, "top1": 70.4} if alpha == 1.0 else {}),
    )


def _mobilenet_v3(size: str, cuts: tuple[str, ...], channels: tuple[int, ...], params_m: float,
                  top1: float) -> Backbone:
    return Backbone(
        name=f"mobilenet_v3_{size}",
        constructor=f"MobileNetV3{size.title()}",
        preprocess="none",
        default_size=224,
        min_size=32,
        cut_points=(*cuts, FULL),
        channels=channels,
        weight_files=(f"weights_mobilenet_v3_{size}_224_1.0_float_no_top_v2.h5",),
        blocks=r"(expanded_conv(?:_\d+)?)_",
        params_m=params_m,
        top1=top1,
    )


_CONVNEXT = {  # size: (widths of the 4 stages, params_m, top1)
    "tiny": ((96, 192, 384, 768), 28.6, 81.3),
    "small": ((96, 192, 384, 768), 50.2, 82.3),
    "base": ((128, 256, 512, 1024), 88.5, 85.3),
    "large": ((192, 384, 768, 1536), 197.7, 86.3),
    "xlarge": ((256, 512, 1024, 2048), 350.1, 86.7),
}


def _convnext(size: str) -> Backbone:
    # A stage's last residual add is an unnamed operation, so each cut is the next stage's
    # downsampling layer, which reads it; the final LayerNormalization has no fixed name.
    widths, params_m, top1 = _CONVNEXT[size]
    return Backbone(
        name=f"convnext_{size}",
        constructor=f"ConvNeXt{size.title().replace('Xl', 'XL')}",
        preprocess="none",
        default_size=224,
        min_size=32,
        cut_points=(*(f"convnext_{size}_downsampling_block_{i}" for i in range(3)), FULL),
        channels=(*widths[1:], widths[3]),
        weight_files=(f"convnext_{size}_notop.h5",),
        blocks=r"convnext_[a-z]+_(stage_\d+_block_\d+|downsampling_block_\d+)",
        params_m=params_m,
        top1=top1,
    )


def _densenet(depth: int, blocks: tuple[int, int], params_m: float, top1: float) -> Backbone:
    # Dense blocks 3 and 4 have `blocks` layers; each adds 32 channels; transitions halve them.
    after3 = 256 + 32 * blocks[0]
    return Backbone(
        name=f"densenet{depth}",
        constructor=f"DenseNet{depth}",
        preprocess="torch",
        default_size=224,
        min_size=32,
        cut_points=("conv2_block6_concat", "conv3_block12_concat", f"conv4_block{blocks[0]}_concat", "relu"),
        channels=(256, 512, after3, after3 // 2 + 32 * blocks[1]),
        weight_files=(f"densenet{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5",),
        blocks=r"(conv\d_block\d+|pool\d)_",  # each dense layer, and each transition
        params_m=params_m,
        top1=top1,
    )


def _round_filters(filters: int, width: float) -> int:
    """keras.applications.efficientnet's own rounding of a stage's channels to multiples of 8."""
    filters *= width
    rounded = max(8, int(filters + 4) // 8 * 8)
    return int(rounded + 8 if rounded < 0.9 * filters else rounded)


_EFFICIENTNET = {  # variant: (width, depth, default size, params_m, top1)
    0: (1.0, 1.0, 224, 5.3, 77.1), 1: (1.0, 1.1, 240, 7.9, 79.1), 2: (1.1, 1.2, 260, 9.2, 80.1),
    3: (1.2, 1.4, 300, 12.3, 81.6), 4: (1.4, 1.8, 380, 19.5, 82.9), 5: (1.6, 2.2, 456, 30.6, 83.6),
    6: (1.8, 2.6, 528, 43.3, 84.0), 7: (2.0, 3.1, 600, 66.7, 84.3),
}


def _efficientnet(variant: int) -> Backbone:
    # Stages 3-6 end with their last block's residual add (blocks are lettered a, b, ...); the
    # number of blocks and channels scale with the variant as Keras computes them.
    width, depth, size, params_m, top1 = _EFFICIENTNET[variant]
    repeats, filters = (2, 3, 3, 4), (40, 80, 112, 192)  # stages 3-6 of B0
    return Backbone(
        name=f"efficientnet_b{variant}",
        constructor=f"EfficientNetB{variant}",
        preprocess="none",
        default_size=size,
        min_size=32,
        cut_points=(*(f"block{stage}{chr(ord('a') + math.ceil(depth * r) - 1)}_add"
                      for stage, r in zip(range(3, 7), repeats)), "top_activation"),
        channels=(*(_round_filters(f, width) for f in filters), _round_filters(1280, width)),
        weight_files=(f"efficientnetb{variant}_notop.h5",),
        blocks=r"(block\d+[a-z])_",
        params_m=params_m,
        top1=top1,
    )


_EFFICIENTNET_V2 = {  # variant: (default size, last block of stages 3 and on, their channels, top channels, params_m, top1)
    "b0": (224, "b c e h", (48, 96, 112, 192), 1280, 7.2, 78.7),
    "b1": (240, "c d f i", (48, 96, 112, 192), 1280, 8.2, 79.8),
    "b2": (260, "c d f j", (56, 104, 120, 208), 1408, 10.2, 80.5),
    "b3": (300, "c e g l", (56, 112, 136, 232), 1536, 14.5, 82.0),
    "s": (384, "d f i o", (64, 128, 160, 256), 1280, 21.6, 83.9),
    "m": (480, "e g n r e", (80, 160, 176, 304, 512), 1280, 54.4, 85.3),
    "l": (480, "g j s y g", (96, 192, 224, 384, 640), 1280, 119.0, 85.7),
}


def _efficientnet_v2(variant: str) -> Backbone:
    size, letters, channels, top, params_m, top1 = _EFFICIENTNET_V2[variant]
    return Backbone(
        name=f"efficientnet_v2_{variant}",
        constructor=f"EfficientNetV2{variant.upper()}",
        preprocess="none",
        default_size=size,
        min_size=32,
        cut_points=(*(f"block{stage}{letter}_add" for stage, letter in enumerate(letters.split(), start=3)),
                    "top_activation"),
        channels=(*channels, top),
        weight_files=(f"efficientnetv2-{variant}_notop.h5",),
        blocks=r"(block\d+[a-z])_",
        params_m=params_m,
        top1=top1,
    )


def _resnet(depth: int, blocks: tuple[int, int], v2: bool, params_m: float, top1: float) -> Backbone:
    # Stages 3 and 4 have `blocks` residual blocks; ResNetV2 ends with its own BatchNorm + ReLU.
    suffix = "_v2" if v2 else ""
    return Backbone(
        name=f"resnet{depth}{suffix}",
        constructor=f"ResNet{depth}{'V2' if v2 else ''}",
        preprocess="tf" if v2 else "caffe",
        default_size=224,
        min_size=32,
        cut_points=("conv2_block3_out", f"conv3_block{blocks[0]}_out", f"conv4_block{blocks[1]}_out",
                    "post_relu" if v2 else "conv5_block3_out"),
        channels=(256, 512, 1024, 2048),
        weight_files=(f"resnet{depth}{'v2' if v2 else ''}_weights_tf_dim_ordering_tf_kernels_notop.h5",),
        blocks=r"(conv\d_block\d+)_",
        params_m=params_m,
        top1=top1,
    )


def _vgg(depth: int, params_m: float, top1: float) -> Backbone:
    return Backbone(
        name=f"vgg{depth}",
        constructor=f"VGG{depth}",
        preprocess="caffe",
        default_size=224,
        min_size=32,
        cut_points=("block3_pool", "block4_pool", "block5_pool"),
        channels=(256, 512, 512),
        weight_files=(f"vgg{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5",),
        blocks=r"(block\d+)_",
        params_m=params_m,
        top1=top1,
    )


# A NASNet cell reads the two cells before it, so its top cells train from two tensors, each a whole cell's output.
_NASNET_CELL_END = r"normal_concat_\d+|reduction_concat_\w+"

_ENTRIES: list[Backbone] = [
    *(_convnext(size) for size in _CONVNEXT),
    _densenet(121, (24, 16), 8.1, 75.0),
    _densenet(169, (32, 32), 14.3, 76.2),
    _densenet(201, (48, 32), 20.2, 77.3),
    *(_efficientnet(variant) for variant in _EFFICIENTNET),
    *(_efficientnet_v2(variant) for variant in _EFFICIENTNET_V2),
    Backbone(
        name="inception_resnet_v2",
        constructor="InceptionResNetV2",
        preprocess="tf",
        default_size=299,
        min_size=75,
        cut_points=("mixed_5b", "block35_10_ac", "mixed_6a", "block17_20_ac", "mixed_7a", "conv_7b_ac"),
        channels=(320, 320, 1088, 1088, 2080, 1536),
        weight_files=("inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",),
        # Each block ends with its activation (the last, block8_10, has none); mixed_* are the stem's
        # and the reductions' concatenations. The branches inside are unnamed.
        blocks=r"block\d+_\d+_ac|block8_10|mixed_\w+",
        blocks_end=True,
        params_m=55.9,
        top1=80.3,
    ),
    Backbone(  # every mixed block: sweeps since the first cut here at any of them (mixed7 is the tutorial's)
        name="inception_v3",
        constructor="InceptionV3",
        preprocess="tf",
        default_size=299,
        min_size=75,
        cut_points=tuple(f"mixed{i}" for i in range(11)),
        channels=(256, 288, 288, 768, 768, 768, 768, 768, 1280, 2048, 2048),
        weight_files=("inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",),
        blocks=r"mixed\d+",  # every other layer is unnamed: mixedN closes block N
        blocks_end=True,
        params_m=23.9,
        top1=77.9,
    ),
    *(_mobilenet(a) for a in (0.25, 0.5, 0.75, 1.0)),
    *(_mobilenet_v2(a) for a in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)),
    _mobilenet_v3("small", ("expanded_conv_2_add", "expanded_conv_7_add", "expanded_conv_10_add"),
                  (24, 48, 96, 576), 2.9, 68.1),
    _mobilenet_v3("large", ("expanded_conv_5_add", "expanded_conv_11_add", "expanded_conv_14_add"),
                  (40, 112, 160, 960), 5.4, 75.6),
    Backbone(  # a cell reads the two cells before it; each cut is the last cell at its resolution
        name="nasnet_mobile",
        constructor="NASNetMobile",
        preprocess="tf",
        default_size=224,
        min_size=32,
        cut_points=("normal_concat_3", "normal_concat_8", "normal_concat_12", FULL),
        channels=(264, 528, 1056, 1056),
        weight_files=("nasnet_mobile_no_top.h5",),
        blocks=_NASNET_CELL_END,
        blocks_end=True,
        params_m=5.3,
        top1=74.4,
    ),
    Backbone(
        name="nasnet_large",
        constructor="NASNetLarge",
        preprocess="tf",
        default_size=331,
        min_size=32,
        cut_points=("normal_concat_5", "normal_concat_12", "normal_concat_18", FULL),
        channels=(1008, 2016, 4032, 4032),
        weight_files=("nasnet_large_no_top.h5",),
        blocks=_NASNET_CELL_END,
        blocks_end=True,
        params_m=88.9,
        top1=82.5,
    ),
    _resnet(50, (4, 6), False, 25.6, 74.9),
    _resnet(101, (4, 23), False, 44.7, 76.4),
    _resnet(152, (8, 36), False, 60.4, 76.6),
    _resnet(50, (4, 6), True, 25.6, 76.0),
    _resnet(101, (4, 23), True, 44.7, 77.2),
    _resnet(152, (8, 36), True, 60.4, 78.0),
    _vgg(16, 138.4, 71.3),
    _vgg(19, 143.7, 71.3),
    Backbone(  # a block's residual add is unnamed: each cut is the ReLU that opens the next block
        name="xception",
        constructor="Xception",
        preprocess="tf",
        default_size=299,
        min_size=71,
        cut_points=("block4_sepconv1_act", "block5_sepconv1_act", "block13_sepconv1_act",
                    "block14_sepconv1_act", "block14_sepconv2_act"),
        channels=(256, 728, 728, 1536, 2048),
        weight_files=("xception_weights_tf_dim_ordering_tf_kernels_notop.h5",),
        blocks=r"(block\d+)_",
        params_m=22.9,
        top1=79.0,
    ),
    Backbone(
        name="simple_cnn",
        constructor="simple_cnn",
        preprocess="unit",
        default_size=64,
        min_size=8,
        cut_points=("block1_pool", "block2_pool", "block3_pool"),
        channels=(32, 64, 128),
        blocks=r"(block\d+)_",
        pretrained=False,
    ),
]

REGISTRY: dict[str, Backbone] = {b.name: b for b in _ENTRIES}


_DECLARED: dict[str, Backbone] = {}  # the own models of the spec being run; set through `declared`


@contextmanager
def declared(entries: dict[str, Backbone]) -> Iterator[None]:
    """Make a spec's own models known to `get_backbone` inside the block; what was known before is restored."""
    before = dict(_DECLARED)
    _DECLARED.update(entries)
    try:
        yield
    finally:
        _DECLARED.clear()
        _DECLARED.update(before)


def is_known(name: Any) -> bool:
    return isinstance(name, str) and (name in _DECLARED or name in REGISTRY)


def get_backbone(name: str) -> Backbone:
    if name in _DECLARED:
        return _DECLARED[name]
    try:
        return REGISTRY[name]
    except KeyError:
        raise SpecError(f"unknown backbone {name!r}; {names_hint(name)}") from None


def names_hint(name) -> str:
    """For a name the registry lacks: the closest ones, and where all are listed (too many for one line)."""
    close = difflib.get_close_matches(str(name), REGISTRY, n=3, cutoff=0.6)
    return (f"did you mean {', '.join(close)}? " if close else "") + f"`sweeper backbones` lists all {len(REGISTRY)}"


def cut_choices(backbone: Backbone) -> tuple[str, ...]:
    """Every value `cut` may take for this backbone: "full" or one of its named layers."""
    return (FULL, *(cut for cut in backbone.cut_points if cut != FULL))


def build_backbone(backbone: Backbone, image_size: int, weights: str | None):
    """The uncut Keras model, without its classifier. `weights` is a file path, "imagenet" or None.

    Imports Keras: call it in a trial, not in the driver.
    """
    import keras

    shape = (image_size, image_size, 3)
    if backbone.own:
        return _own_model(keras, backbone, shape)
    if backbone.constructor == "simple_cnn":
        return _simple_cnn(keras, shape)
    cls = getattr(keras.applications, backbone.constructor)
    return cls(input_shape=shape, include_top=False, weights=weights, **backbone.kwargs)


def _simple_cnn(keras, shape):
    """A small convolutional network trained from scratch: the no-transfer baseline."""
    layers = keras.layers
    inputs = keras.Input(shape, name="input")
    x = inputs
    for i, filters in enumerate((32, 64, 128), start=1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{i}_conv")(x)
        x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    return keras.Model(inputs, x, name="simple_cnn")


def _own_model(keras, backbone: Backbone, shape: tuple[int, int, int]):
    """A spec's own model as a functional model taking `shape` images, its layer names kept.

    A file is loaded with Keras' safe mode (no arbitrary code from the file); one saved for any input
    size is rebuilt for this one, with its weights, so that every tensor's shape is known. The
    factory is called with `input_shape`.
    """
    if backbone.hub:
        model = _hub_backbone(backbone.hub, shape)
    elif backbone.file:
        model = keras.saving.load_model(backbone.file, compile=False, safe_mode=True)
    else:
        # Every trial, the evaluation and the export must build the same network: a factory that
        # initialises weights at random draws them from one fixed seed.
        keras.utils.set_random_seed(0)
        model = _factory(backbone.factory)(input_shape=shape)
    if not isinstance(model, keras.Model):
        raise TypeError(f"{backbone.factory} returned a {type(model).__name__}, not a keras.Model")
    if (isinstance(model, keras.Sequential) or backbone.hub) and len(model.inputs) == len(model.outputs) == 1:
        model = keras.Model(model.inputs[0], model.outputs[0], name=model.name)  # plain functional, its layers kept
    if len(model.inputs) == 1 and None in model.inputs[0].shape[1:]:
        fixed = keras.models.clone_model(model, input_tensors=keras.Input(shape))
        fixed.set_weights(model.get_weights())
        model = fixed
    return model


def _factory(factory: str):
    """The function "module:function" names; the module is a dotted name, or a `.py` file."""
    module_name, _, function = factory.rpartition(":")
    if module_name.endswith(".py"):  # run from its source: an import would write __pycache__ beside it
        module = types.ModuleType(Path(module_name).stem)
        module.__file__ = module_name
        exec(compile(Path(module_name).read_text(), module_name, "exec"), module.__dict__)
    else:
        module = importlib.import_module(module_name)
    return getattr(module, function)


def _keras_hub():
    try:
        import keras_hub
    except ImportError:
        raise SpecError("KerasHub backbones (hub:<preset>) need KerasHub: pip install 'sweeper-tune[hub]'") from None
    return keras_hub


def _hub_backbone(preset: str, shape: tuple[int, int, int]):
    """A KerasHub backbone from its preset, for `shape` images where the architecture allows any size."""
    models = _keras_hub().models
    try:
        return models.Backbone.from_preset(preset, image_shape=shape)
    except TypeError:  # an architecture whose input size is fixed by its preset
        return models.Backbone.from_preset(preset)


def hub_scaling(preset: str) -> tuple[Any, Any]:
    """(scale, offset) of the preset's image converter, applied to 0-255 pixels; (1/255, None) without one."""
    try:
        converter = _keras_hub().layers.ImageConverter.from_preset(preset)
    except (ValueError, FileNotFoundError):  # the preset has no image converter
        return 1 / 255, None
    return converter.scale, converter.offset
