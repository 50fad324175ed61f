"""SavedModel export for TensorFlow Serving (and the source graph of the TFLite/ONNX exports).

The exported `tf.Module` owns plain `tf.Variable` copies of the folded generator's weights and
runs the Keras model through `stateless_call` with them. Why: the TFLite converter does not
freeze Keras 3 variables captured from a SavedModel - it reports success and the model outputs
NaN - whereas plain module variables are frozen correctly.

Serving signatures (`mobile=False`), every input validated in the graph (tf.debugging asserts →
InvalidArgument with a readable message, never an image):
- `serving_default`: `label_map` int32 [B, H, W] (+ `seed` int64 [B] or [] for VAE models)
  (+ `instance_map` int32 [B, H, W] for models with instance edges) → `image` uint8 [B, H, W, 3]
- `with_z` (VAE): `label_map`, `z` float32 [B, z_dim] (+ `instance_map`) → `image`
- `style` (VAE with encoder): `label_map`, `style_image` uint8 [B, h, w, 3] (any size; the encoder
  resizes to 256x256) (+ `instance_map`) → `image`; z = the encoder's mean (deterministic)
- `image_float`: as `with_z` (VAE) or `serving_default` → `image_float` float32 in [-1, 1]
Inputs are declared with unknown rank so wrong ranks reach the graph's checks.

`mobile=True` (TFLite / ONNX source): one signature `serving_default` with fixed [None, H, W]
inputs (`label_map`, `z` for VAE, `instance_map` with instance edges), no asserts (neither
runtime has them), outputs `image` uint8, `image_float` float32 and `label_ok` bool [B] (False
where a label map holds an id the model does not take: such a row's image is meaningless).
Valid ids follow `spade_tf.data.labels` everywhere (0 .. num_label_channels-1, + 255 with a
don't-care label); the SavedModel's assert gives that module's message.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import tensorflow as tf

from spade_tf.data import labels
from spade_tf.data.images import from_uint8
from spade_tf.errors import SpadeError
from spade_tf.inference import SpadeModel, instance_edges, to_uint8, z_from_seed


class _Untracked:
    """Holds a Keras model without tf.Module tracking it (its own variables are not exported)."""

    def __init__(self, model):
        self.model = model


def _copy_variables(model, prefix):
    def plain(v):
        name = f"{prefix}/{v.path}".replace(":", "_")
        return tf.Variable(v.numpy(), trainable=False, name=name)

    return [plain(v) for v in model.trainable_variables], [plain(v) for v in model.non_trainable_variables]


def _assert(cond, *message):
    return tf.debugging.Assert(cond, list(message), summarize=10)


class SpadeServingModule(tf.Module):
    """The exported module; see the module docstring for its signatures."""

    def __init__(self, model: SpadeModel, mobile: bool = False):
        super().__init__(name="spade")
        cfg = self.config = model.config
        self._mobile = mobile
        generator = export_generator(model.generator, mobile)
        self._generator = _Untracked(generator)
        self.generator_trainable, self.generator_state = _copy_variables(generator, "generator")
        self._encoder = None
        if cfg.use_vae and model.encoder is not None and not mobile:
            self._encoder = _Untracked(model.encoder)
            self.encoder_trainable, self.encoder_state = _copy_variables(model.encoder, "encoder")
        self.config_json = tf.Variable(json.dumps(cfg.to_dict(), sort_keys=True), trainable=False,
                                       name="config_json")

    # ---- specs and checks ---------------------------------------------------------------------
    def _spec(self, name, dtype, shape):
        return tf.TensorSpec(shape if self._mobile else None, dtype, name=name)

    def input_specs(self, kind: str) -> dict[str, tf.TensorSpec]:
        """Input specs of a signature: kind in 'default', 'with_z', 'style'."""
        cfg = self.config
        h, w = cfg.image_size
        specs = {"label_map": self._spec("label_map", tf.int32, [None, h, w])}
        if cfg.use_vae:
            if kind == "default" and not self._mobile:
                specs["seed"] = self._spec("seed", tf.int64, [None])
            elif kind == "style":
                specs["style_image"] = self._spec("style_image", tf.uint8, [None, None, None, 3])
            else:
                specs["z"] = self._spec("z", tf.float32, [None, cfg.z_dim])
        if cfg.use_instance_edges:
            specs["instance_map"] = self._spec("instance_map", tf.int32, [None, h, w])
        return specs

    def _ids(self, label_map):
        """Validated ids (don't care → label_nc) and the per-row `label_ok` flags (`labels.py`'s rule)."""
        cfg = self.config
        h, w = cfg.image_size
        if not self._mobile:
            rank = _assert(tf.equal(tf.rank(label_map), 3),
                           f"label_map must be int32 [batch, {h}, {w}] (class ids); got shape",
                           tf.shape(label_map))
            with tf.control_dependencies([rank]):
                size = _assert(tf.reduce_all(tf.equal(tf.shape(label_map)[1:], [h, w])),
                               f"label_map must be [batch, {h}, {w}] for this model (resize label maps "
                               "with nearest-neighbour); got shape", tf.shape(label_map))
            with tf.control_dependencies([size]):
                ids = labels.assert_ids_tf(label_map, cfg, "label_map")
            with tf.control_dependencies([ids]):
                # a reshape, not tf.ensure_shape: EnsureShape can fail before the asserts run
                label_map = tf.reshape(label_map, [-1, h, w])
        valid = tf.cast(labels.valid_tf(label_map, cfg), tf.int32)
        label_ok = tf.equal(tf.reduce_min(valid, axis=[1, 2]), 1)
        return labels.to_channels_tf(label_map, cfg), label_ok

    def _batch_check(self, tensor, name, batch, tail, what):
        """Assert rank len(tail)+1, the label_map's batch size and fixed trailing dims."""
        if self._mobile:
            return tensor
        rank = _assert(tf.equal(tf.rank(tensor), len(tail) + 1), f"{name} must be {what}; got shape",
                       tf.shape(tensor))
        with tf.control_dependencies([rank]):
            dims = tf.concat([[batch], [d if d is not None else -1 for d in tail]], 0)
            shape = tf.shape(tensor)
            match = tf.reduce_all(tf.equal(shape, dims) | tf.equal(dims, -1))
            check = _assert(match, f"{name} must be {what} with the label_map's batch size; got shape",
                            shape, "label_map batch", batch)
        with tf.control_dependencies([check]):
            dims = [-1] + [d if d is not None else tf.shape(tensor)[i + 1] for i, d in enumerate(tail)]
            return tf.reshape(tensor, tf.stack(dims))

    def _semantics(self, label_map, instance_map):
        from spade_tf.models import make_semantics

        cfg = self.config
        edges = None
        if cfg.use_instance_edges:
            h, w = cfg.image_size
            instance_map = self._batch_check(instance_map, "instance_map", tf.shape(label_map)[0], [h, w],
                                             f"int32 [batch, {h}, {w}] instance ids")
            edges = instance_edges(instance_map)
        return make_semantics(label_map, cfg, edges)

    # ---- networks ---------------------------------------------------------------------------
    def _generator_weights(self):
        """(trainable, non-trainable) values the generator runs with."""
        return self.generator_trainable, self.generator_state

    def _generate(self, semantics, z, label_ids=None):
        trainable, non_trainable = self._generator_weights()
        out, _ = self._generator.model.stateless_call(trainable, non_trainable, semantics, z=z,
                                                      training=False, label_ids=label_ids)
        return out

    def _encode(self, style_image):
        image = from_uint8(tf.cast(style_image, tf.float32))
        (mu, _), _ = self._encoder.model.stateless_call(
            self.encoder_trainable, self.encoder_state, image, training=False)
        return mu

    def _run(self, label_map, instance_map=None, z=None, seed=None, style_image=None):
        """→ (image float32 [B, H, W, 3] in [-1, 1], label_ok bool [B])."""
        cfg = self.config
        label_map, label_ok = self._ids(label_map)
        batch = tf.shape(label_map)[0]
        semantics = self._semantics(label_map, instance_map)
        if cfg.use_vae:
            if seed is not None:
                seed = tf.cast(seed, tf.int64)
                seed = _assert_seed(seed, batch)
                z = z_from_seed(tf.broadcast_to(seed, [batch]), cfg.z_dim)
            elif style_image is not None:
                style_image = self._batch_check(style_image, "style_image", batch, [None, None, 3],
                                                "uint8 [batch, height, width, 3] (RGB)")
                z = self._encode(style_image)
            else:
                z = self._batch_check(z, "z", batch, [cfg.z_dim], f"float32 [batch, {cfg.z_dim}]")
        # mobile graphs run SPADE's look-ups unchecked (assume_onehot): hand them the ids the one-hot
        # was built from (no id there → the zero row, id n), so an int8 graph never quantizes them
        n = cfg.num_label_channels
        ids = tf.where((label_map >= 0) & (label_map < n), label_map, n) if self._mobile else None
        return self._generate(semantics, z, ids), label_ok

    # ---- signatures -------------------------------------------------------------------------
    def function(self, kind: str, outputs=("image",)):
        """A tf.function with the input signature of `kind` ('default', 'with_z', 'style') that
        returns the named outputs ('image', 'image_float', 'label_ok')."""
        specs = self.input_specs(kind)

        def fn(*args):  # signature input names come from the TensorSpec names
            image, label_ok = self._run(**dict(zip(specs, args, strict=True)))
            result = {"image": to_uint8(image), "image_float": image, "label_ok": label_ok}
            return {k: result[k] for k in outputs}

        return tf.function(fn, input_signature=list(specs.values()), autograph=False)

    def mobile_function(self):
        """The single TFLite/ONNX function (mobile=True): label_map (+ z) (+ instance_map)."""
        return self.function("with_z" if self.config.use_vae else "default",
                             ("image", "image_float", "label_ok"))

    def signatures(self) -> dict[str, object]:
        """Concrete functions keyed by signature name."""
        cfg = self.config

        def make(kind, outputs):
            return self.function(kind, outputs).get_concrete_function()

        if self._mobile:
            return {"serving_default": self.mobile_function().get_concrete_function()}
        sigs = {"serving_default": make("default", ("image",))}
        if cfg.use_vae:
            sigs["with_z"] = make("with_z", ("image",))
            if self._encoder is not None:
                sigs["style"] = make("style", ("image",))
        sigs["image_float"] = make("with_z" if cfg.use_vae else "default", ("image_float",))
        return sigs


def export_generator(generator, mobile: bool):
    """The generator copy an export graph runs: `generator.folded(...)` built with the export flags.

    Every exported graph is inference only, so convolutions keep their native gradients
    (`forward_conv_gradients=False`, no custom gradient in the graph; see `layers.conv.same_conv`).
    For TFLite/ONNX (`mobile`) SPADE's one-hot look-ups run without their run-time check
    (`assume_onehot=True`), whose `cond` neither TFLite builtins nor tf2onnx handle: the graph
    builds the one-hot itself from the int label map, so the check cannot fail; an invalid id gives
    an all-zero pixel, which the look-ups treat as the conv does (and `label_ok` reports).
    Same weights, same dtype policy (a bf16 generator stays bf16)."""
    return generator.folded(assume_onehot=mobile, forward_conv_gradients=False)


def _assert_seed(seed, batch):
    rank_ok = tf.rank(seed) <= 1
    size_ok = tf.logical_or(tf.equal(tf.size(seed), 1), tf.equal(tf.size(seed), batch))
    check = _assert(rank_ok & size_ok, "seed must be int64 [batch] or a scalar; got shape", tf.shape(seed),
                    "label_map batch", batch)
    with tf.control_dependencies([check]):
        return tf.reshape(seed, [-1])


def export_saved_model(model: SpadeModel, out_dir, name: str = "spade", version: int = 1,
                       overwrite: bool = False) -> Path:
    """Write a TF Serving model at `out_dir/name/version/` and return that path."""
    if int(version) < 0:
        raise SpadeError(f"--version must be a non-negative integer, got {version}")
    target = Path(out_dir) / name / str(int(version))
    if target.exists():
        if not overwrite:
            raise SpadeError(f"{target}: already exists; choose another --version or pass --overwrite")
        shutil.rmtree(target)
    save_module(SpadeServingModule(model), target)
    extra = target / "assets.extra"
    extra.mkdir(exist_ok=True)
    (extra / "config.json").write_text(model.config.to_json(), encoding="utf-8")
    return target


def save_module(module: SpadeServingModule, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(path), signatures=module.signatures())
    return path
