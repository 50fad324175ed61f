"""Official SPADE preprocessing (data/base_dataset.py) in TensorFlow ops, one example at a time.

`transform_example` applies the same resize / crop / flip to the photo, the label map and the
instance map, as the official `get_params` + `get_transform` do:

    resize_and_crop            resize to load_size x load_size, random crop_size square
    scale_width_and_crop       width -> load_size (aspect kept), random crop
    scale_shortside_and_crop   short side -> load_size (aspect kept), random crop
    crop                       random crop only
    scale_width / scale_shortside   as above, no crop (sizes vary: batch 1 or equal-size data)
    fixed                      resize to crop_size wide, round(crop_size / aspect_ratio) high
    none                       round each side to a multiple of 32 (official make_power_2)

Photos are resized bicubic with antialiasing (what Pillow does), labels and instances nearest with
Pillow's exact pixel choice (see `pil_nearest_indices`). A crop window reaching past the image is
zero-padded, as Pillow's `crop` does. Flip: random horizontal flip when augmenting and not `no_flip`.

Deviation from the official code, on purpose: official `scale_shortside` keeps the short side at its
*original* length and stretches the long side (a bug that distorts the aspect ratio); here the short
side becomes load_size and the aspect ratio is kept.
"""

from __future__ import annotations

import tensorflow as tf

from spade_tf.data.images import from_uint8

POWER_2_BASE = 32


def resize_target(height, width, config):
    """(new_h, new_w) int32 scalars of the resize step of `config.preprocess_mode`."""
    h = tf.cast(height, tf.int32)
    w = tf.cast(width, tf.int32)
    load = tf.constant(config.load_size, tf.int32)
    mode = config.preprocess_mode
    if mode == "resize_and_crop":
        return load, load
    if mode in ("scale_width", "scale_width_and_crop"):
        # official: load_size * h // w (integer), and no resize when the width already fits
        return tf.where(w == load, h, load * h // w), load
    if mode in ("scale_shortside", "scale_shortside_and_crop"):
        short = tf.minimum(h, w)
        long_ = tf.maximum(h, w)
        new_long = tf.where(short == load, long_, load * long_ // short)
        new_short = tf.where(short == load, short, load)
        width_is_shorter = tf.equal(w, short)
        return (tf.where(width_is_shorter, new_long, new_short),
                tf.where(width_is_shorter, new_short, new_long))
    if mode == "fixed":
        return (tf.constant(round(config.crop_size / config.aspect_ratio), tf.int32),
                tf.constant(config.crop_size, tf.int32))
    if mode == "none":
        def to_base(n):
            # Python-style round half to even (tf.round), as official int(round(n / 32) * 32)
            r = tf.cast(tf.round(tf.cast(n, tf.float64) / POWER_2_BASE), tf.int32) * POWER_2_BASE
            return tf.maximum(r, POWER_2_BASE)

        return to_base(h), to_base(w)
    return h, w  # "crop": no resize


def pil_nearest_indices(out_size, in_size):
    """Source indices Pillow's NEAREST resize picks: int(s/2 + k*s), accumulated in float64.

    Pillow adds the scale step by step in double precision; a closed form (floor((k+.5)*s))
    differs on exact ties, so the running sum is reproduced.
    """
    out_size = tf.cast(out_size, tf.int32)
    scale = tf.cast(in_size, tf.float64) / tf.cast(out_size, tf.float64)
    steps = tf.concat([[scale * 0.5], tf.fill([out_size - 1], scale)], axis=0)
    idx = tf.cast(tf.math.cumsum(steps), tf.int32)
    return tf.minimum(idx, tf.cast(in_size, tf.int32) - 1)


def resize_nearest(x, new_h, new_w):
    """Nearest resize of [H, W, ...] ids (any dtype), pixel-exact with Pillow NEAREST."""
    shape = tf.shape(x)
    rows = pil_nearest_indices(new_h, shape[0])
    cols = pil_nearest_indices(new_w, shape[1])
    return tf.gather(tf.gather(x, rows, axis=0), cols, axis=1)


def resize_photo(image, new_h, new_w):
    """Bicubic (antialiased, like Pillow) resize of a float [H, W, 3] photo in 0..255, re-quantised
    to whole 0..255 values as Pillow's 8-bit output is."""
    shape = tf.shape(image)

    def resize():
        out = tf.image.resize(image, tf.stack([new_h, new_w]), method="bicubic", antialias=True)
        return tf.clip_by_value(tf.round(out), 0.0, 255.0)

    same = tf.logical_and(tf.equal(shape[0], new_h), tf.equal(shape[1], new_w))
    return tf.cond(same, lambda: image, resize)  # Pillow also returns a copy when sizes match


def crop_padded(x, top, left, height, width):
    """x[top:top+height, left:left+width], zero-padded where the window leaves the image."""
    shape = tf.shape(x)
    pad_h = tf.maximum(0, top + height - shape[0])
    pad_w = tf.maximum(0, left + width - shape[1])
    paddings = tf.concat([[[0, pad_h], [0, pad_w]], tf.zeros([tf.rank(x) - 2, 2], tf.int32)], axis=0)
    x = tf.pad(x, paddings)
    return x[top:top + height, left:left + width]


def instance_edges(instance):
    """Boundary map of instance ids [..., H, W] -> float32 [..., H, W, 1], as official `get_edges`.

    A pixel is an edge when its id differs from its right or lower neighbour; both pixels of such a
    pair are marked (so left/up differences count too).
    """
    t = tf.convert_to_tensor(instance)
    rank = len(t.shape)
    dx = tf.not_equal(t[..., :, 1:], t[..., :, :-1])
    dy = tf.not_equal(t[..., 1:, :], t[..., :-1, :])
    lead = [[0, 0]] * (rank - 2)
    edge = (tf.pad(dx, lead + [[0, 0], [1, 0]]) | tf.pad(dx, lead + [[0, 0], [0, 1]])
            | tf.pad(dy, lead + [[1, 0], [0, 0]]) | tf.pad(dy, lead + [[0, 1], [0, 0]]))
    return tf.cast(edge, tf.float32)[..., None]


def transform_example(image, label, instance, seed, config, augment: bool):
    """Resize / crop / flip photo, labels and instances identically.

    image: uint8 [H, W, 3]; label: int32 [H, W]; instance: int32 [H, W] or None;
    seed: int64 [2] stateless seed. Returns (image float32 [h, w, 3] in [-1, 1], label int32 [h, w],
    instance int32 [h, w] or None). With `augment` False the crop is centred and nothing is flipped.
    """
    shape = tf.shape(label)
    new_h, new_w = resize_target(shape[0], shape[1], config)
    photo = resize_photo(tf.cast(image, tf.float32), new_h, new_w)
    label = resize_nearest(label, new_h, new_w)
    if instance is not None:
        instance = resize_nearest(instance, new_h, new_w)

    if "crop" in config.preprocess_mode:
        size = config.crop_size
        max_top = tf.maximum(0, new_h - size)
        max_left = tf.maximum(0, new_w - size)
        if augment:
            seeds = tf.random.experimental.stateless_split(seed, 3)
            top = tf.random.stateless_uniform([], seeds[0], 0, max_top + 1, dtype=tf.int32)
            left = tf.random.stateless_uniform([], seeds[1], 0, max_left + 1, dtype=tf.int32)
        else:
            top, left = max_top // 2, max_left // 2
        photo = crop_padded(photo, top, left, size, size)
        label = crop_padded(label, top, left, size, size)
        if instance is not None:
            instance = crop_padded(instance, top, left, size, size)

    if augment and not config.no_flip:
        flip_seed = tf.random.experimental.stateless_split(seed, 3)[2]
        flip = tf.random.stateless_uniform([], flip_seed) > 0.5
        photo = tf.cond(flip, lambda: tf.reverse(photo, [1]), lambda: photo)
        label = tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label)
        if instance is not None:
            instance = tf.cond(flip, lambda: tf.reverse(instance, [1]), lambda: instance)

    return from_uint8(photo), label, instance
