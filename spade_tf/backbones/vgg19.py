"""VGG19 relu features for the official perceptual loss, on Keras's ImageNet VGG19 (Caffe inputs:
BGR, 0..255, ImageNet mean removed; see `spade_tf.training.perceptual` for why not torchvision's)."""

from __future__ import annotations

import os

import keras
from keras import ops

from spade_tf.errors import SpadeError

VGG_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
VGG_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def vgg_preprocess(images):
    """[B, H, W, 3] RGB in [-1, 1] -> Caffe VGG input: BGR, 0..255, ImageNet mean removed."""
    x = (ops.cast(images, "float32") + 1.0) * 127.5
    x = ops.flip(x, axis=-1)
    return x - ops.convert_to_tensor(_CAFFE_BGR_MEAN, "float32")


def build_vgg19_features(weights: str | os.PathLike | None = None,
                         allow_download: bool = True) -> keras.Model:
    """Frozen model: images in [-1, 1] -> [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1] (NHWC).

    weights: a local Keras VGG19 (no top) weights file; None: $SPADE_VGG19_WEIGHTS, Keras's cache, or
    Keras's published file (MD5-checked) when downloading is allowed (`spade_tf.weights`).
    Raises SpadeError when none works.
    """
    from spade_tf.weights import VGG19_NOTOP, resolve

    source = str(resolve(VGG19_NOTOP, weights, allow_download))
    try:
        vgg = keras.applications.VGG19(include_top=False, weights=source, input_shape=(None, None, 3))
    except Exception as e:  # wrong file
        raise SpadeError(f"could not load VGG19 weights from '{source}' ({e})") from e
    vgg.trainable = False
    images = keras.Input((None, None, 3))
    features = keras.Model(vgg.input, [vgg.get_layer(n).output for n in VGG_LAYERS])(vgg_preprocess(images))
    model = keras.Model(images, features, name="vgg19_features")
    model.trainable = False
    return model
