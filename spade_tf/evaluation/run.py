"""What `spade evaluate` does, as library functions returning one dict each.

* `evaluate_folders(real, fake, ...)`: FD/KID between two image folders (real features cached).
* `evaluate_model(model, data, ...)`: synthesize from a dataset's label maps and measure FD/KID
  against its photos, optionally segmentation accuracy (a given or the built-in segmenter) and
  LPIPS diversity (VAE models).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import numpy as np

from spade_tf.data.images import quantize
from spade_tf.errors import SpadeError
from spade_tf.evaluation import fid


def make_extractor(features: str = "inception", inception_weights=None, alexnet_weights=None):
    """'inception' (standard FID; needs the weights) or 'alexnet' (fd_alexnet / kid_alexnet)."""
    if features == "inception":
        return fid.inception_extractor(inception_weights)
    if features == "alexnet":
        return fid.alexnet_extractor(alexnet_weights)
    raise SpadeError(f"unknown feature network '{features}'; use inception or alexnet")


def evaluate_folders(real_dir, fake_dir, features="inception", inception_weights=None, alexnet_weights=None,
                     kid_subsets=100, kid_subset_size=1000, batch_size=32, cache_dir=None, use_cache=True,
                     progress=True, seed=0, fd_method="auto") -> dict:
    extractor = make_extractor(features, inception_weights, alexnet_weights)
    real = fid.folder_features(real_dir, extractor, batch_size, cache_dir, use_cache, progress, "real")
    fake = fid.folder_features(fake_dir, extractor, batch_size, use_cache=False, progress=progress,
                               desc="fake")
    out = fid.distances(real, fake, extractor, kid_subsets, kid_subset_size, seed, fd_method)
    return {"real": str(real_dir), "fake": str(fake_dir), **out}


# ---- synthesize-and-evaluate ---------------------------------------------------------------------
def data_config(model_config, preset: str | None):
    """The model's config, with the dataset layout of `preset` when given (sizes stay the model's)."""
    if preset is None:
        return model_config
    from spade_tf.config import get_preset

    p = get_preset(preset)
    for key, there, here in p.differences(model_config, p.LABEL_KEYS)[:1]:
        raise SpadeError(f"preset '{preset}' has {key}={there!r} but the model was built with "
                         f"{key}={here!r}: this model does not fit that dataset")
    return dataclasses.replace(model_config, dataset_mode=p.dataset_mode)


def _generate(model, labels, edges, seeds):
    """Generator output float32 [B, H, W, 3] in [-1, 1] for a data batch."""
    from spade_tf.models.semantics import make_semantics

    semantics = make_semantics(labels, model.config, edges)
    z = model.latent(len(labels), seed=seeds)
    return np.asarray(model.generator(semantics, z=z, training=False), np.float32)


def _segmenter_for(spec, cfg, data_dir, input_range, steps, seed, cache_dir, progress):
    from spade_tf.evaluation import segmentation as seg

    if spec != "builtin":
        return seg.Segmenter(spec, input_range=input_range), {"segmenter": str(spec)}
    from spade_tf.data import build_dataset

    key_parts = {"data": seg.dataset_hash(data_dir) if data_dir else "embedded-synthetic",
                 "config": {k: getattr(cfg, k) for k in cfg.DATA_KEYS}}
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()

    def pairs():
        ds = build_dataset(cfg, data_dir, split="train", batch_size=8, shuffle=True, seed=seed, repeat=True)
        return ((b["image"].numpy(), b["label_map"].numpy()) for b in ds)

    model, path, loaded = seg.cached_small_segmenter(key, pairs, cfg.label_nc, steps,
                                                     ignore_index=cfg.label_nc, seed=seed,
                                                     cache_dir=cache_dir, progress=progress)
    info = {"segmenter": "builtin small U-Net (trained on the dataset's train split; comparable only with "
                         "itself)", "segmenter_file": str(path), "segmenter_cached": loaded,
            "segmenter_steps": steps, "segmenter_seed": seed}
    return seg.Segmenter(model), info


def evaluate_model(model_path, data_dir=None, preset=None, split="val", features="inception",
                   inception_weights=None, alexnet_weights=None, max_images=None, batch_size=8,
                   kid_subsets=100, kid_subset_size=1000, segmenter=None, segmenter_input_range="-1,1",
                   segmenter_steps=2000, segmenter_cache_dir=None, diversity_k=0, diversity_maps=16,
                   seed=0, progress=True, fd_method="auto") -> dict:
    """Synthesize from `split`'s label maps (one z per image from seed + index for VAE models) and
    evaluate. data_dir None = the embedded synthetic dataset."""
    from tqdm import tqdm

    from spade_tf.data import build_dataset
    from spade_tf.evaluation import segmentation as seg
    from spade_tf.inference import load_generator

    model = load_generator(model_path)
    cfg = data_config(model.config, preset)
    extractor = make_extractor(features, inception_weights, alexnet_weights)
    seg_model, seg_info = (None, {})
    if segmenter:
        seg_model, seg_info = _segmenter_for(segmenter, cfg, data_dir, segmenter_input_range, segmenter_steps,
                                             seed, segmenter_cache_dir, progress)
    fake_metrics = seg.SegmentationMetrics(cfg.label_nc, ignore_index=cfg.label_nc)
    real_metrics = seg.SegmentationMetrics(cfg.label_nc, ignore_index=cfg.label_nc)

    ds = build_dataset(cfg, data_dir, split=split, batch_size=batch_size, shuffle=False, augment=False,
                       repeat=False, drop_remainder=False)
    total = math.ceil(max_images / batch_size) if max_images else None
    real_feats, fake_feats, diversity_batches, n = [], [], [], 0
    for batch in tqdm(ds, total=total, desc="synthesize + features", unit="batch", disable=not progress):
        labels = batch["label_map"].numpy()
        if max_images:
            labels = labels[: max_images - n]
        if len(labels) == 0:
            break
        if tuple(labels.shape[1:]) != tuple(cfg.image_size):
            raise SpadeError(f"the data gives {labels.shape[1:]} label maps but the model makes "
                             f"{tuple(cfg.image_size)}; use a cropping preprocess_mode")
        edges = batch["instance_edges"].numpy()[: len(labels)] if "instance_edges" in batch else None
        real_u8, real_q = quantize(batch["image"].numpy()[: len(labels)])
        fake_u8, fake_q = quantize(_generate(model, labels, edges, seed + n + np.arange(len(labels))))
        real_feats.append(extractor(real_u8))
        fake_feats.append(extractor(fake_u8))
        if seg_model is not None:
            fake_metrics.update(seg_model.predict_ids(fake_q, labels.shape[1:]), labels)
            real_metrics.update(seg_model.predict_ids(real_q, labels.shape[1:]), labels)
        if diversity_k and sum(len(b[0]) for b in diversity_batches) < diversity_maps:
            diversity_batches.append((labels, edges))
        n += len(labels)
        if max_images and n >= max_images:
            break
    if n < 2:
        raise SpadeError(f"only {n} image(s) in split '{split}' of {data_dir or 'the synthetic dataset'}; "
                         "need at least 2")
    result = {"model": str(model_path), "data": str(data_dir) if data_dir else "embedded synthetic dataset",
              "split": split}
    result.update(fid.distances(np.concatenate(real_feats), np.concatenate(fake_feats), extractor,
                                kid_subsets, kid_subset_size, seed, fd_method))
    if seg_model is not None:
        fake_s, real_s = fake_metrics.result(), real_metrics.result()
        result["segmentation"] = {**seg_info, "num_classes": cfg.label_nc, "ignore_label": cfg.label_nc,
                                  "miou": fake_s["miou"], "pixel_accuracy": fake_s["pixel_accuracy"],
                                  "mean_class_accuracy": fake_s["mean_class_accuracy"],
                                  "real_images_miou": real_s["miou"],
                                  "real_images_pixel_accuracy": real_s["pixel_accuracy"]}
    if diversity_k:
        result["lpips_diversity"] = _diversity(model, diversity_batches, diversity_k, diversity_maps, seed,
                                               alexnet_weights)
    return result


def _diversity(model, batches, k, max_maps, seed, alexnet_weights) -> dict:
    from spade_tf.evaluation.lpips import LPIPS, lpips_diversity

    if not model.config.use_vae:
        raise SpadeError("--diversity needs a multimodal (use_vae) model; this one maps each label map to "
                         "one image")
    if k < 2:
        raise SpadeError(f"--diversity K must be >= 2, got {k}")
    metric = LPIPS(alexnet_weights)
    samples, used = [], 0
    for labels, edges in batches:
        labels = labels[: max_maps - used]
        edges = None if edges is None else edges[: len(labels)]
        per_k = [quantize(_generate(model, labels, edges, seed + 10_000 * (j + 1) + used
                                      + np.arange(len(labels))))[1] for j in range(k)]
        samples.append(np.stack(per_k, axis=1))  # [B, K, H, W, 3]
        used += len(labels)
    return {"value": lpips_diversity(np.concatenate(samples), metric), "samples_per_map": k,
            "label_maps": used, "metric": "LPIPS alex v0.1, mean over sample pairs"}
