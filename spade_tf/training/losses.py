"""GauGAN losses as small pure functions (keras.ops), with the official `GANLoss` semantics.

Conventions (official `models/networks/loss.py` and `pix2pix_model.py`):

* Discriminator outputs are a list over scales; each scale is a list of tensors whose LAST entry is
  the patch logits [B, h, w, 1] and whose others are intermediate features (or a bare tensor = logits).
* Every "mean" term is a mean over all elements of a tensor. We compute it as a per-sample mean,
  summed over the batch and divided by `global_batch_size` (default: this batch's size). With the
  default this is exactly the official mean; under a `tf.distribute` strategy each replica passes the
  global batch size, so the replica losses add up to the single-device loss on the whole batch.
* The KL term is a SUM over batch and latent dimensions (as official), so it needs no scaling
  across replicas: the replicas' sums add up to the global sum.
"""

from __future__ import annotations

from keras import ops

GAN_MODES = ("hinge", "ls", "original", "w")


def _per_sample_mean(x):
    """[B, ...] -> [B]: mean over every axis but the batch axis."""
    x = ops.cast(x, "float32")
    return ops.mean(ops.reshape(x, (ops.shape(x)[0], -1)), axis=1)


def _batch_reduce(per_sample, global_batch_size=None):
    """[B] -> scalar: sum / global_batch_size (= mean over this batch when None)."""
    if global_batch_size is None:
        return ops.mean(per_sample)
    return ops.sum(per_sample) / ops.cast(global_batch_size, "float32")


def _logits(prediction):
    return prediction[-1] if isinstance(prediction, (list, tuple)) else prediction


def gan_elementwise(logits, target_is_real: bool, for_discriminator: bool, gan_mode: str):
    """The official per-element GAN loss, before any mean.

    hinge: D real -> -min(0, x - 1), D fake -> -min(0, -x - 1), G -> -x.
    ls: (x - t)^2 with t = 1 (real) / 0 (fake). original: BCE with logits against t.
    w: real -> -x, fake -> x. Only hinge distinguishes the generator's call.
    """
    x = ops.cast(logits, "float32")
    if gan_mode == "hinge":
        if not for_discriminator:
            if not target_is_real:
                raise ValueError("the generator's hinge loss must aim for real")
            return -x
        return -ops.minimum(x - 1.0, 0.0) if target_is_real else -ops.minimum(-x - 1.0, 0.0)
    target = 1.0 if target_is_real else 0.0
    if gan_mode == "ls":
        return ops.square(x - target)
    if gan_mode == "original":
        # numerically stable binary_cross_entropy_with_logits
        return ops.relu(x) - x * target + ops.log1p(ops.exp(-ops.abs(x)))
    if gan_mode == "w":
        return -x if target_is_real else x
    raise ValueError(f"unknown gan_mode '{gan_mode}', expected one of {GAN_MODES}")


def gan_loss(predictions, target_is_real: bool, for_discriminator: bool = True, gan_mode: str = "hinge",
             global_batch_size=None):
    """Official `GANLoss.__call__`: per scale the mean of the element losses, averaged over scales.

    predictions: list (scales) of [B, h, w, 1] logits or of lists whose last entry is the logits.
    Returns a scalar.
    """
    if not isinstance(predictions, (list, tuple)):
        predictions = [predictions]
    per_sample = 0.0
    for pred in predictions:
        per_sample = per_sample + _per_sample_mean(
            gan_elementwise(_logits(pred), target_is_real, for_discriminator, gan_mode))
    return _batch_reduce(per_sample / len(predictions), global_batch_size)


def generator_gan_loss(pred_fake, gan_mode: str = "hinge", global_batch_size=None):
    """G's adversarial term: D(G(s)) should look real (hinge: -mean D(G(s)))."""
    return gan_loss(pred_fake, True, for_discriminator=False, gan_mode=gan_mode,
                    global_batch_size=global_batch_size)


def discriminator_losses(pred_fake, pred_real, gan_mode: str = "hinge", global_batch_size=None):
    """(D_Fake, D_real), the two official discriminator terms (D's loss is their sum)."""
    return (gan_loss(pred_fake, False, True, gan_mode, global_batch_size),
            gan_loss(pred_real, True, True, gan_mode, global_batch_size))


def feature_matching_loss(pred_fake, pred_real, lambda_feat: float = 10.0, global_batch_size=None):
    """Official GAN_Feat: sum over scales i and intermediate layers j of L1(fake_ij, real_ij),
    times lambda_feat / num_D. The final logits are excluded; real features are not differentiated.
    """
    num_d = len(pred_fake)
    per_sample = 0.0
    for fake_scale, real_scale in zip(pred_fake, pred_real, strict=True):
        for fake, real in zip(fake_scale[:-1], real_scale[:-1], strict=True):
            diff = ops.abs(ops.cast(fake, "float32") - ops.stop_gradient(ops.cast(real, "float32")))
            per_sample = per_sample + _per_sample_mean(diff)
    return _batch_reduce(per_sample, global_batch_size) * (lambda_feat / num_d)


def kld_loss(mu, logvar, lambda_kld: float = 0.05):
    """Official KLD: -0.5 * SUM(1 + logvar - mu^2 - exp(logvar)) over batch and dims, times lambda_kld."""
    mu = ops.cast(mu, "float32")
    logvar = ops.cast(logvar, "float32")
    return -0.5 * ops.sum(1.0 + logvar - ops.square(mu) - ops.exp(logvar)) * lambda_kld


def weighted_l1_feature_loss(fake_feats, real_feats, layer_weights, global_batch_size=None):
    """sum_l w_l * mean|fake_l - stop_gradient(real_l)| (the official VGGLoss, before lambda_vgg)."""
    per_sample = 0.0
    for w, fake, real in zip(layer_weights, fake_feats, real_feats, strict=True):
        diff = ops.abs(ops.cast(fake, "float32") - ops.stop_gradient(ops.cast(real, "float32")))
        per_sample = per_sample + w * _per_sample_mean(diff)
    return _batch_reduce(per_sample, global_batch_size)


def unit_normalize(features, eps: float = 1e-10):
    """LPIPS's channel normalisation: f / (||f||_2 over channels + eps), NHWC."""
    features = ops.cast(features, "float32")
    norm = ops.sqrt(ops.sum(ops.square(features), axis=-1, keepdims=True))
    return features / (norm + eps)


def lpips_feature_loss(fake_feats, real_feats, channel_weights, global_batch_size=None):
    """LPIPS distance from precomputed features: sum_l mean_hw sum_c w_lc (n(fake) - n(real))^2,
    with n = unit_normalize and the real features not differentiated.

    channel_weights: list of [C_l] arrays (the LPIPS linear heads).
    """
    per_sample = 0.0
    for w, fake, real in zip(channel_weights, fake_feats, real_feats, strict=True):
        d = ops.square(unit_normalize(fake) - ops.stop_gradient(unit_normalize(real)))
        per_sample = per_sample + _per_sample_mean(ops.sum(d * ops.cast(w, "float32"), axis=-1))
    return _batch_reduce(per_sample, global_batch_size)
