"""The model side of the web demo: MODEL folder → class palette, example label maps, one compiled call.

TensorFlow-only (the server imports it lazily). The generator is the folded copy from
`spade_tf.inference.load_generator`; label ids → one-hot → generator → uint8 runs as a single
`tf.function` with a fixed input signature, traced once at start-up.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from spade_tf.config import SPADEConfig
from spade_tf.data.labels import DONT_CARE
from spade_tf.errors import SpadeError
from spade_tf.inference import (
    SpadeModel,
    instance_edges,
    label_files,
    load_generator,
    read_label_map,
    to_uint8,
)
from spade_tf.models import make_semantics

LABEL_COLORS_FILE = "label_colors.json"  # written by `spade train` for custom data
SYNTHETIC_EXAMPLES = 8


@dataclasses.dataclass(frozen=True)
class DemoClass:
    """One paintable class. `id`: one-hot index; `value`: the pixel value in a label PNG."""

    id: int
    name: str
    color: tuple[int, int, int]
    value: int


def _rgb(value, where: str) -> tuple[int, int, int]:
    if isinstance(value, str) and value.startswith("#") and len(value) == 7:
        return tuple(int(value[i:i + 2], 16) for i in (1, 3, 5))
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, int) for v in value):
        return tuple(int(v) for v in value)
    raise SpadeError(f"{where}: colour must be [r, g, b] or '#rrggbb', got {value!r}")


def read_label_colors(path: Path, config: SPADEConfig) -> dict[int, tuple[str | None, tuple]]:
    """`label_colors.json` → {id: (name or None, rgb)}.

    Accepted shapes: a list of {"id", "name"?, "color"|"colour"|"rgb"}; a list of colours (index =
    id); a dict {"<id>": colour or {"name", "color"}}; any of these under a "classes" key.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SpadeError(f"{path}: cannot read the class colours ({e})") from None
    if isinstance(data, dict) and "classes" in data:
        data = data["classes"]
    items = list(data.items()) if isinstance(data, dict) else list(enumerate(data))
    out = {}
    for key, entry in items:
        where = f"{path} entry {key!r}"
        name = None
        if isinstance(entry, dict):
            key = entry.get("id", key)
            name = entry.get("name")
            entry = entry.get("color", entry.get("colour", entry.get("rgb")))
        try:
            class_id = int(key)
        except (TypeError, ValueError):
            raise SpadeError(f"{where}: class id must be an integer") from None
        if not 0 <= class_id < config.num_label_channels:
            raise SpadeError(f"{where}: class id {class_id} outside [0, {config.num_label_channels})")
        out[class_id] = (None if name is None else str(name), _rgb(entry, where))
    return out


def _fallback_palette(n: int) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(0)
    return [tuple(int(v) for v in rng.integers(40, 256, 3)) for _ in range(n)]


def demo_classes(config: SPADEConfig, model_dir: Path | None = None) -> list[DemoClass]:
    """The palette: the preset's class table, overridden by MODEL/label_colors.json when present."""
    try:
        from spade_tf.data.classes import class_table

        table = {i: (name, tuple(colour)) for i, name, colour in class_table(config)}
    except ImportError:  # data package not installed in this checkout
        colours = _fallback_palette(config.num_label_channels)
        table = {i: (f"class {i}", colours[i]) for i in range(config.num_label_channels)}
    if model_dir is not None and (model_dir / LABEL_COLORS_FILE).exists():
        for i, (name, colour) in read_label_colors(model_dir / LABEL_COLORS_FILE, config).items():
            table[i] = (name or table.get(i, (f"class {i}",))[0], colour)
    out = []
    for i in range(config.num_label_channels):
        name, colour = table.get(i, (f"class {i}", (128, 128, 128)))
        dontcare = config.contain_dontcare_label and i == config.label_nc
        out.append(DemoClass(i, name, tuple(int(c) for c in colour), DONT_CARE if dontcare else i))
    return out


RUNTIMES = ("keras", "savedmodel", "tflite")


def keras_engine(model: SpadeModel):
    """ids int32 [H, W], z float32 [1, z_dim] or None → uint8 [H, W, 3], one compiled graph."""
    cfg = model.config
    h, w = cfg.image_size
    generator = model.generator
    signature = [tf.TensorSpec([None, h, w], tf.int32)]
    if cfg.use_vae:
        signature.append(tf.TensorSpec([None, cfg.z_dim], tf.float32))

    # Painted maps have no instance map: class boundaries stand in for instance edges (for
    # Cityscapes every class boundary is an instance boundary too).
    def run(ids, z=None):
        edges = instance_edges(ids) if cfg.use_instance_edges else None
        return to_uint8(generator(make_semantics(ids, cfg, edges), z=z, training=False))

    compiled = tf.function(run, input_signature=signature)

    def engine(ids, z):
        args = [tf.constant(ids[None])] + ([tf.constant(z)] if cfg.use_vae else [])
        return compiled(*args).numpy()[0]

    return engine


def _export_feeds(cfg: SPADEConfig, ids: np.ndarray, z) -> dict[str, np.ndarray]:
    """Inputs of the exported signatures: the channel ids (valid ids there too), z, instance map = labels."""
    values = ids[None].astype(np.int32)
    feeds = {"label_map": values}
    if cfg.use_vae:
        feeds["z"] = np.asarray(z, np.float32)
    if cfg.use_instance_edges:
        feeds["instance_map"] = values  # edges at class boundaries, as the Keras engine
    return feeds


def savedmodel_engine(model: SpadeModel, path=None):
    """The exported SavedModel (`spade export`; written to a temporary folder when `path` is None)."""
    if path is None:
        from spade_tf.export.saved_model import SpadeServingModule, save_module

        path = save_module(SpadeServingModule(model), Path(_scratch()) / "saved_model")
    try:
        loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError) as e:
        raise SpadeError(f"{path}: cannot load this SavedModel ({e})") from None
    cfg = model.config
    name = "with_z" if cfg.use_vae else "serving_default"
    if name not in loaded.signatures:
        raise SpadeError(f"{path}: no '{name}' signature; export it with `spade export` from this model")
    signature = loaded.signatures[name]

    def engine(ids, z):
        feeds = {k: tf.constant(v) for k, v in _export_feeds(cfg, ids, z).items()}
        return signature(**feeds)["image"].numpy()[0]

    engine.keep_alive = loaded
    return engine


def tflite_engine(model: SpadeModel, path=None, num_threads: int | None = None):
    """The TFLite export (float32; converted to a temporary file when `path` is None).

    LiteRT interpreters are not thread-safe: each worker thread gets its own.
    """
    import threading

    from spade_tf.export.tflite import export_tflite, interpreter, run_tflite

    if path is None:
        path = export_tflite(model, Path(_scratch()) / "model.tflite")
    local = threading.local()
    cfg = model.config

    def engine(ids, z):
        if getattr(local, "interp", None) is None:
            local.interp = interpreter(path, num_threads=num_threads)
        return np.asarray(run_tflite(local.interp, _export_feeds(cfg, ids, z), config=cfg)["image"])[0]

    return engine


def _scratch() -> str:
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="spade-demo-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


class DemoModel:
    """What the server needs: config, palette, examples and `synthesize(ids, seed, style)`."""

    def __init__(self, model: SpadeModel, classes: list[DemoClass], examples: list[tuple[str, np.ndarray]],
                 name: str = "", runtime: str = "keras", runtime_path=None):
        if runtime not in RUNTIMES:
            raise SpadeError(f"runtime '{runtime}': choose one of {RUNTIMES}")
        self.model = model
        self.config = model.config
        self.classes = classes
        self.examples = examples  # [(name, int32 [H, W] of one-hot ids)]
        self.name = name or Path(model.source).name
        self.runtime = runtime
        if runtime == "keras":
            self._engine = keras_engine(model)
        elif runtime == "savedmodel":
            self._engine = savedmodel_engine(model, runtime_path)
        else:
            self._engine = tflite_engine(model, runtime_path)

    @classmethod
    def load(cls, path, labels=None, max_examples: int = 24, runtime: str = "keras",
             runtime_path=None) -> DemoModel:
        """MODEL as `load_generator` takes it; `labels`: a label PNG or folder of examples;
        `runtime`: keras (compiled Keras graph), savedmodel or tflite (exported from MODEL at start,
        or loaded from `runtime_path`)."""
        model = load_generator(path)
        path = Path(path)
        model_dir = path if path.is_dir() else path.parent
        classes = demo_classes(model.config, model_dir)
        return cls(model, classes, load_examples(model.config, labels, max_examples), name=model_dir.name,
                   runtime=runtime, runtime_path=runtime_path)

    @property
    def has_encoder(self) -> bool:
        return self.model.encoder is not None

    def warm_up(self) -> None:
        """Trace the compiled call once so the first request is not slow."""
        self.synthesize(np.zeros(self.config.image_size, np.int32), seed=0)

    def synthesize(self, ids: np.ndarray, seed: int = 0, style: np.ndarray | None = None) -> np.ndarray:
        """ids int32 [H, W] (one-hot ids, already checked) → uint8 [H, W, 3].

        VAE models: z = the style image's encoder mean when `style` (float [H, W, 3] in [-1, 1]) is
        given, else N(0, 1) from `seed` (the same z as `spade synthesize --seed`). Other models
        ignore both.
        """
        z = None
        if self.config.use_vae:
            if style is not None:
                z = self.model.latent(1, style_image=style)
            else:
                z = self.model.latent(1, seed=seed)
        return self._engine(np.asarray(ids, np.int32), z)


def load_examples(config: SPADEConfig, labels=None, limit: int = 24) -> list[tuple[str, np.ndarray]]:
    """Label maps to start painting from: `labels` (file or folder of class-id PNGs, resized to the
    model size) or, for the synthetic dataset, a few generated scenes; otherwise none."""
    h, w = config.image_size
    if labels is not None:
        files = label_files(labels)[:limit]
        return [(f.stem, read_label_map(f, config)) for f in files]
    if config.dataset_mode == "synthetic":
        from spade_tf.data.synthetic import generate

        _, maps, _ = generate(SYNTHETIC_EXAMPLES, h, w, seed=2019)
        return [(f"synthetic {i}", m.astype(np.int32)) for i, m in enumerate(maps)]
    return []
