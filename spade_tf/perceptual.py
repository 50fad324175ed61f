"""Perceptual loss backbones: VGG19 (official) or the offline LPIPS AlexNet.

VGG19 (`perceptual_backbone="vgg19"`, official `VGGLoss`): L1 between relu1_1, relu2_1, relu3_1,
relu4_1, relu5_1 features of fake and real, weighted 1/32, 1/16, 1/8, 1/4, 1, times lambda_vgg.
The weights are `keras.applications.VGG19(include_top=False)`: Keras's ImageNet VGG19, converted from
the original Caffe model, which expects BGR pixels in 0..255 minus the ImageNet channel means. The
official code uses torchvision's VGG19 (RGB, trained on (x/255 - mean)/std) and feeds it [-1, 1]
images without any normalisation. That input convention is tied to torchvision's weights and cannot
be reproduced with Keras's; so we give Keras's network the input it was trained on
(`keras.applications.vgg19.preprocess_input` on (x + 1) * 127.5). Consequence: the VGG term has a
different scale than the official one (Caffe features are larger: the keras.io GauGAN example
uses 0.1 instead of 10 with this preprocessing); tune `lambda_vgg` if you compare loss curves.

AlexNet (`perceptual_backbone="alexnet"`, offline, the default of the `tiny` preset): the LPIPS v0.1
distance with its ImageNet AlexNet (`shared/weights/lpips_alex_v0.1.npz`): the five relu maps are
unit-normalised over channels, squared differences are weighted per channel by LPIPS's learned linear
heads (layer weights = those heads, calibrated on human perceptual judgements), averaged over space and
summed over layers; times lambda_vgg. Its values lie in about [0, 1] per image, close to the official
unweighted VGG term's order of magnitude, so lambda_vgg = 10 keeps its usual role.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
from keras import ops

from spade_tf import losses
from spade_tf.errors import SpadeError

VGG_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
VGG_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
VGG_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def no_weights_message(reason: str) -> str:
    return (f"perceptual loss: {reason}. Either pass the Keras VGG19 weights file with "
            f"`--vgg-weights PATH/{VGG_WEIGHTS_FILE}` (Python: `train(..., perceptual_weights=PATH)`), "
            "or use the offline "
            "LPIPS AlexNet backbone with `--set perceptual_backbone=alexnet` (weights "
            "shared/weights/lpips_alex_v0.1.npz or $SPADE_ALEXNET_WEIGHTS), or switch the term off with "
            "`--set lambda_vgg=0`.")


def vgg_preprocess(images):
    """[B, H, W, 3] RGB in [-1, 1] -> Caffe VGG input: BGR, 0..255, ImageNet mean removed."""
    x = (ops.cast(images, "float32") + 1.0) * 127.5
    x = ops.flip(x, axis=-1)
    return x - ops.convert_to_tensor(_CAFFE_BGR_MEAN, "float32")


def build_vgg19_features(weights: str | os.PathLike | None = None,
                         allow_download: bool = True) -> keras.Model:
    """Frozen model: images in [-1, 1] -> [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1] (NHWC).

    weights: a local Keras VGG19 (no top) weights file; None downloads "imagenet" weights (or uses
    Keras's cache) when allowed. Raises SpadeError when neither works.
    """
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise SpadeError(no_weights_message(f"VGG19 weights file {path} does not exist"))
        source = str(path)
    elif allow_download:
        source = "imagenet"
    else:
        raise SpadeError(no_weights_message("no VGG19 weights file given and downloading is off"))
    try:
        vgg = keras.applications.VGG19(include_top=False, weights=source, input_shape=(None, None, 3))
    except Exception as e:  # download failure, wrong file
        raise SpadeError(no_weights_message(f"could not load VGG19 weights from '{source}' ({e})")) from e
    vgg.trainable = False
    images = keras.Input((None, None, 3))
    features = keras.Model(vgg.input, [vgg.get_layer(n).output for n in VGG_LAYERS])(vgg_preprocess(images))
    model = keras.Model(images, features, name="vgg19_features")
    model.trainable = False
    return model


class PerceptualLoss:
    """Callable `(fake, real, global_batch_size=None) -> scalar`, lambda_vgg included.

    fake, real: [B, H, W, 3] in [-1, 1]. Both go through the backbone in one batch; the real
    features are not differentiated (official `y_vgg[i].detach()`).
    """

    def __init__(self, backbone, kind: str, layer_weights, lambda_vgg: float):
        self.backbone = backbone
        self.kind = kind
        self.layer_weights = layer_weights
        self.lambda_vgg = float(lambda_vgg)

    def features(self, images):
        return self.backbone(images)

    def __call__(self, fake, real, global_batch_size=None):
        n = ops.shape(fake)[0]
        feats = self.features(ops.concatenate([ops.cast(fake, "float32"), ops.cast(real, "float32")], 0))
        fake_f = [f[:n] for f in feats]
        real_f = [f[n:] for f in feats]
        if self.kind == "vgg19":
            loss = losses.weighted_l1_feature_loss(fake_f, real_f, self.layer_weights, global_batch_size)
        else:
            loss = losses.lpips_feature_loss(fake_f, real_f, self.layer_weights, global_batch_size)
        return loss * self.lambda_vgg


def build_perceptual_loss(config, weights: str | os.PathLike | None = None,
                          allow_download: bool = True) -> PerceptualLoss | None:
    """The configured perceptual loss, or None when lambda_vgg == 0 (term switched off).

    weights: VGG19 weights file for "vgg19"; for "alexnet" the lpips_alex_v0.1.npz (None: default path).
    """
    if config.lambda_vgg == 0:
        return None
    # The backbone always runs in float32 (under a mixed policy too): it is frozen, small next to
    # the generator, and its features feed a loss.
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        return _build(config, weights, allow_download)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _build(config, weights, allow_download):
    if config.perceptual_backbone == "alexnet":
        from spade_tf.evaluation.alexnet import AlexNetFeatures, load_alexnet_npz

        try:
            arrays = load_alexnet_npz(weights)
        except SpadeError as e:
            raise SpadeError(no_weights_message(str(e))) from e
        heads = [arrays[f"lin{i}.weight"].reshape(-1) for i in range(5)]
        backbone = AlexNetFeatures(weights, name="perceptual_alexnet")
        backbone.trainable = False
        return PerceptualLoss(backbone, "alexnet", heads, config.lambda_vgg)
    backbone = build_vgg19_features(weights, allow_download=allow_download)
    return PerceptualLoss(backbone, "vgg19", VGG_LAYER_WEIGHTS, config.lambda_vgg)
