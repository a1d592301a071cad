"""The backbone registry: every pretrained model sweeper can cut and fine-tune, declared once.

Each entry carries what a trial needs to build it (the Keras constructor and its arguments),
how its inputs are scaled, its input sizes, the layers it can be cut at with their channels,
and the names of its official ImageNet weight files. Importing this module does not import
TensorFlow, so the driver and `sweeper backbones` stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import SpecError
from .hyperparameters import FULL

# How a backbone expects its 0-255 RGB input to be scaled (keras.applications' modes):
# tf = [-1, 1]; caffe = BGR minus the ImageNet mean; unit = [0, 1]; none = the model does it.
PREPROCESS_MODES = ("tf", "caffe", "unit", "none")


@dataclass(frozen=True)
class Backbone:
    name: str
    constructor: str  # a keras.applications class name, or "simple_cnn"
    preprocess: str  # one of PREPROCESS_MODES
    default_size: int
    min_size: int
    cut_points: tuple[str, ...]  # named layers, shallow to deep; the last is the model's output
    # The channels of each cut point's output: a frozen, average-pooled feature holds that many
    # floats per image, so the disk a sweep needs is known without building the model.
    channels: tuple[int, ...] = ()
    weight_files: tuple[str, ...] = ()  # official no-top files, preferred first; "{size}" is filled in
    kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = True  # False: no ImageNet weights exist; always trained from scratch

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
                  1.0: (192, 576, 320, 1280)}[alpha],
        weight_files=(f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{{size}}_no_top.h5",),
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
    )


_ENTRIES: list[Backbone] = [
    *(_mobilenet_v2(a) for a in (0.35, 0.5, 0.75, 1.0)),
    *(_mobilenet(a) for a in (0.25, 0.5, 1.0)),
    Backbone(
        name="inception_v3",
        constructor="InceptionV3",
        preprocess="tf",
        default_size=299,
        min_size=75,
        cut_points=tuple(f"mixed{i}" for i in range(11)),
        channels=(256, 288, 288, 768, 768, 768, 768, 768, 1280, 2048, 2048),
        weight_files=("inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",),
    ),
    Backbone(
        name="resnet50",
        constructor="ResNet50",
        preprocess="caffe",
        default_size=224,
        min_size=32,
        cut_points=("conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
        channels=(256, 512, 1024, 2048),
        weight_files=("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",),
    ),
    Backbone(
        name="vgg16",
        constructor="VGG16",
        preprocess="caffe",
        default_size=224,
        min_size=32,
        cut_points=("block3_pool", "block4_pool", "block5_pool"),
        channels=(256, 512, 512),
        weight_files=("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",),
    ),
    Backbone(
        name="efficientnet_b0",
        constructor="EfficientNetB0",
        preprocess="none",
        default_size=224,
        min_size=32,
        cut_points=("block3b_add", "block4c_add", "block5c_add", "block6d_add", "top_activation"),
        channels=(40, 80, 112, 192, 1280),
        weight_files=("efficientnetb0_notop.h5",),
    ),
    Backbone(
        name="simple_cnn",
        constructor="simple_cnn",
        preprocess="unit",
        default_size=64,
        min_size=8,
        cut_points=("block1_pool", "block2_pool", "block3_pool"),
        channels=(32, 64, 128),
        pretrained=False,
    ),
]

REGISTRY: dict[str, Backbone] = {b.name: b for b in _ENTRIES}


def get_backbone(name: str) -> Backbone:
    try:
        return REGISTRY[name]
    except KeyError:
        raise SpecError(f"unknown backbone {name!r}; allowed: {', '.join(REGISTRY)}") from None


def cut_choices(backbone: Backbone) -> tuple[str, ...]:
    """Every value `cut` may take for this backbone: "full" or one of its named layers."""
    return (FULL, *backbone.cut_points)


def build_backbone(backbone: Backbone, image_size: int, weights: str | None):
    """The uncut Keras model, without its classifier. `weights` is a file path, "imagenet" or None.

    Imports Keras: call it in a trial, not in the driver.
    """
    import keras

    shape = (image_size, image_size, 3)
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
