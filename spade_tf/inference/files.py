"""Folder synthesis: label PNG(s) → image PNG(s), streamed in batches (`spade synthesize`)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from spade_tf.data.decode import read_instance_map, read_label_map, read_style_image
from spade_tf.errors import SpadeError
from spade_tf.inference.model import SpadeModel, load_generator


def label_files(path: str | os.PathLike, suffixes: Sequence[str] = (".png",)) -> list[Path]:
    """A label PNG, or every PNG under a folder (recursively, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise SpadeError(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise SpadeError(f"{path}: no {'/'.join(suffixes)} label maps in this folder")
    return files


# ---- folders ----------------------------------------------------------------------------------
def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def synthesize_files(model, labels, out_dir, instances=None, seed=None, num_samples: int = 1,
                     style=None, batch_size: int = 4, skip_bad: bool = False, progress: bool = False,
                     jit_compile: bool | None = None) -> dict:
    """Label PNG(s) → OUT/<relative name>.png (or <name>_<k>.png for num_samples > 1).

    Streams: reads `batch_size` files, generates, writes, moves on (memory does not grow with the
    number of files). `model`: a SpadeModel or a path for `load_generator`. VAE models: sample k
    uses seed `seed + k` (seed None → 0) for every label map, or the style image's encoding
    (its mean when seed is None). jit_compile: XLA for the generator calls (None: the model's
    setting). Returns {"written", "resized", "size", "bad": [(path, why)]}.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    model = model if isinstance(model, SpadeModel) else load_generator(model)
    if jit_compile is not None and jit_compile != model.jit_compile:
        model = dataclasses.replace(model, jit_compile=jit_compile)
    cfg = model.config
    if not cfg.use_vae and (num_samples > 1 or style is not None):
        raise SpadeError(f"{model.source}: not a VAE model (use_vae=False): its output does not depend on "
                         "a seed or style, so --num-samples > 1 and --style do not apply")
    if instances is not None and not cfg.use_instance_edges:
        raise SpadeError(f"{model.source}: this model does not use instance edges (no_instance=True); "
                         "drop --instances")
    style_image = None if style is None else read_style_image(style, cfg)
    label_root = Path(labels)
    files = label_files(label_root)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"written": 0, "resized": 0, "size": cfg.image_size, "bad": []}

    def count_resize(*_):
        report["resized"] += 1

    def load(path: Path):
        labels = read_label_map(path, cfg, on_resize=count_resize)
        inst = None
        if instances is not None:
            rel = path.relative_to(label_root) if label_root.is_dir() else Path(path.name)
            inst_path = Path(instances) if Path(instances).is_file() else Path(instances) / rel
            inst = read_instance_map(inst_path, cfg)
        return labels, inst

    def outputs(path: Path) -> list[Path]:
        rel = path.relative_to(label_root) if label_root.is_dir() else Path(path.name)
        if num_samples == 1:
            return [out_dir / rel.with_suffix(".png")]
        return [out_dir / rel.with_name(f"{rel.stem}_{k}.png") for k in range(num_samples)]

    with ThreadPoolExecutor(max_workers=2) as pool, \
            tqdm(total=len(files), unit="map", disable=not progress) as bar:
        writes = []
        for start in range(0, len(files), batch_size):
            batch_files, label_maps, inst_maps = [], [], []
            for path, result in zip(files[start:start + batch_size],
                                    pool.map(_try(load), files[start:start + batch_size]), strict=True):
                if isinstance(result, SpadeError):
                    if not skip_bad:
                        raise result
                    report["bad"].append((str(path), str(result)))
                    continue
                batch_files.append(path)
                label_maps.append(result[0])
                inst_maps.append(result[1])
            if batch_files:
                # pad a short batch to the full size so the generator is traced once
                pad = batch_size - len(batch_files)
                batch_labels = np.stack(label_maps + label_maps[-1:] * pad)
                batch_inst = np.stack(inst_maps + inst_maps[-1:] * pad) if instances is not None else None
                for k in range(num_samples):
                    sample_seed = None if seed is None and style_image is not None else (seed or 0) + k
                    images = model.synthesize(batch_labels, seed=sample_seed, style_image=style_image,
                                              instance_maps=batch_inst)
                    for path, image in zip(batch_files, images[:len(batch_files)], strict=True):
                        writes.append(pool.submit(_write_png, outputs(path)[k], image))
                # bounded queue of pending writes: wait for this batch's before the next is read
                for future in writes:
                    future.result()
                report["written"] += len(writes)
                writes = []
            bar.update(min(batch_size, len(files) - start))
    return report


def _try(fn):
    def wrapped(arg):
        try:
            return fn(arg)
        except SpadeError as e:
            return e

    return wrapped
