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

AlexNet (`perceptual_backbone="alexnet"`): the LPIPS v0.1 distance with its ImageNet AlexNet
(`lpips_alex_v0.1.npz`, found or fetched by `spade_tf.weights`): the five relu maps are
unit-normalised over channels, squared differences are weighted per channel by LPIPS's learned linear
heads (layer weights = those heads, calibrated on human perceptual judgements), averaged over space and
summed over layers; times lambda_vgg. Its values lie in about [0, 1] per image, close to the official
unweighted VGG term's order of magnitude, so lambda_vgg = 10 keeps its usual role. The distance and its
gradient are finite where a feature vector is all zero (see `evaluation.lpips.unit_normalize`).

Weight files (both backbones): an explicit path, then an environment variable, then the cache, then
the published files with pinned hashes (`spade_tf.weights`).
"""

from __future__ import annotations

import os

import keras
from keras import ops

from spade_tf.backbones.vgg19 import VGG_WEIGHTS_FILE
from spade_tf.errors import SpadeError
from spade_tf.evaluation.lpips import lpips_from_features
from spade_tf.training import losses

VGG_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def no_weights_message(reason: str) -> str:
    return (f"perceptual loss: {reason}. Either pass the Keras VGG19 weights file with "
            f"`--vgg-weights PATH/{VGG_WEIGHTS_FILE}` (or $SPADE_VGG19_WEIGHTS; Python: "
            "`train(..., perceptual_weights=PATH)`), or use the LPIPS AlexNet backbone with "
            "`--set perceptual_backbone=alexnet` (lpips_alex_v0.1.npz via --perceptual-weights or "
            "$SPADE_ALEXNET_WEIGHTS, or fetched), or switch the term off with `--set lambda_vgg=0`.")


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
            per_sample = lpips_from_features(fake_f, real_f, self.layer_weights, stop_gradient_1=True)
            if global_batch_size is None:
                loss = ops.mean(per_sample)
            else:
                loss = ops.sum(per_sample) / ops.cast(global_batch_size, "float32")
        return loss * self.lambda_vgg


def build_perceptual_loss(config, weights: str | os.PathLike | None = None,
                          allow_download: bool = True) -> PerceptualLoss | None:
    """The configured perceptual loss, or None when lambda_vgg == 0 (term switched off).

    weights: VGG19 weights file for "vgg19"; for "alexnet" the lpips_alex_v0.1.npz (None: environment
    variable, cache or download, see `spade_tf.weights`).
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
        from spade_tf.backbones.alexnet import AlexNetFeatures, load_alexnet_npz, resolve_alexnet_weights

        try:
            path = resolve_alexnet_weights(weights, allow_download)
            arrays = load_alexnet_npz(path)
        except SpadeError as e:
            raise SpadeError(no_weights_message(str(e))) from e
        heads = [arrays[f"lin{i}.weight"].reshape(-1) for i in range(5)]
        backbone = AlexNetFeatures(path, name="perceptual_alexnet")
        backbone.trainable = False
        return PerceptualLoss(backbone, "alexnet", heads, config.lambda_vgg)
    from spade_tf.backbones.vgg19 import build_vgg19_features

    try:
        backbone = build_vgg19_features(weights, allow_download=allow_download)
    except SpadeError as e:
        raise SpadeError(no_weights_message(str(e))) from e
    return PerceptualLoss(backbone, "vgg19", VGG_LAYER_WEIGHTS, config.lambda_vgg)
