"""`spade benchmark quality`: image quality against training steps, for a few training variants.

What it does (all under OUT):

1. Splits the dataset folder (facades layout) into a training part and a held-out validation part,
   deterministically: the stems are sorted, permuted with `numpy.random.default_rng(seed)`, and the
   first `round(val_fraction * n)` go to validation. `split/train` and `split/val` are folders of
   symbolic links in the same layout; `split.json` lists the stems. Nothing in `val` is trained on.
2. Trains the built-in small segmenter (`segmentation.cached_small_segmenter`) on the TRAINING
   part's real pairs only (cached under OUT/segmenter); scores it once on the real validation photos
   as the ceiling the generators can reach.
3. Trains each variant (baseline; no_vgg = lambda_vgg=0; ema = use_ema=true; vae = use_vae=true)
   from the same seed (same initial weights, same data order) for the same number of steps, and
   every `eval_every` steps (and at step 0) synthesizes the validation label maps and records
   FD / KID on AlexNet features (`fd_alexnet`, `kid_alexnet`: NOT the standard FID), mIoU / pixel
   accuracy of the segmenter on the synthesized images, and LPIPS diversity (VAE variants only:
   mean pairwise LPIPS over K samples per map; null for generators without a latent code, which
   map a label map to one image).
4. Writes results.csv, results.json, results.md (markdown tables) and quality_plot.png
   (when matplotlib is installed; plotting is optional and imported only there).

The EMA variant is evaluated with its EMA generator (what it would export); the others with G.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from spade_tf.data.images import quantize
from spade_tf.errors import SpadeError

VARIANTS = {
    "baseline": [],
    "no_vgg": ["lambda_vgg=0"],
    "ema": ["use_ema=true"],
    "vae": ["use_vae=true"],
}
CSV_COLUMNS = ("variant", "step", "train_s", "eval_s", "fd_alexnet", "kid_alexnet", "kid_alexnet_std",
               "miou", "pixel_accuracy", "mean_class_accuracy", "lpips_diversity", "G_loss", "D_loss")
PLOT_NAME = "quality_plot.png"


# ---- the split -------------------------------------------------------------------------------------
def split_stems(stems, val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train stems, validation stems), both sorted; deterministic in (the set of stems, fraction, seed)."""
    stems = sorted(set(stems))
    if not 0.0 < val_fraction < 1.0:
        raise SpadeError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    n_val = int(round(val_fraction * len(stems)))
    if n_val < 2 or len(stems) - n_val < 1:
        raise SpadeError(f"{len(stems)} pairs with --val-fraction {val_fraction} give {n_val} validation and "
                         f"{len(stems) - n_val} training pairs; need at least 2 and 1 (more data or another "
                         "fraction)")
    order = np.random.default_rng(seed).permutation(len(stems))
    val = sorted(stems[i] for i in order[:n_val])
    val_set = set(val)
    return [s for s in stems if s not in val_set], val


def make_split(config, data_dir, out_dir, val_fraction: float, seed: int) -> tuple[Path, dict]:
    """Writes OUT/split/{train,val}/{images,labels}/ (symbolic links) and OUT/split.json.

    Returns (the split root, usable as a data folder with split "train" / "val"; the split info).
    """
    from spade_tf.data import list_pairs

    pairs = list_pairs(config, str(data_dir), "train")
    by_stem = {Path(p.label).stem: p for p in pairs}
    if len(by_stem) != len(pairs):
        raise SpadeError(f"{data_dir}: several pairs share a file stem; the split is by stem")
    train, val = split_stems(by_stem, val_fraction, seed)
    root = Path(out_dir) / "split"
    for part, stems in (("train", train), ("val", val)):
        for kind in ("images", "labels", "instances"):
            folder = root / part / kind
            if folder.is_dir():
                for old in folder.iterdir():
                    old.unlink()
        for stem in stems:
            pair = by_stem[stem]
            for kind, path in (("images", pair.image), ("labels", pair.label), ("instances", pair.instance)):
                if not path:
                    continue
                folder = root / part / kind
                folder.mkdir(parents=True, exist_ok=True)
                os.symlink(os.path.abspath(path), folder / Path(path).name)
    info = {"data": str(data_dir), "seed": seed, "val_fraction": val_fraction, "n_train": len(train),
            "n_val": len(val), "train_stems": train, "val_stems": val,
            "rule": "sorted stems, numpy default_rng(seed).permutation, first round(fraction*n) -> val"}
    (Path(out_dir) / "split.json").write_text(json.dumps(info, indent=1) + "\n")
    return root, info


def load_arrays(config, split_root, split: str, batch_size: int = 16):
    """(label maps int32 [N, H, W], photos float32 [N, H, W, 3] in [-1, 1]) of a split, centre-cropped,
    in file order, no augmentation."""
    from spade_tf.data import build_dataset

    ds = build_dataset(config, str(split_root), split=split, batch_size=batch_size, shuffle=False,
                       augment=False, repeat=False, drop_remainder=False)
    labels, images = [], []
    for batch in ds:
        labels.append(batch["label_map"].numpy())
        images.append(batch["image"].numpy())
    return np.concatenate(labels), np.concatenate(images)


# ---- metrics on the validation part ------------------------------------------------------------
def train_segmenter(config, split_root, steps: int, seed: int, cache_dir, progress: bool, width: int = 32):
    """The built-in small segmenter, trained on the split's TRAINING pairs only (cached)."""
    from spade_tf.data import build_dataset
    from spade_tf.evaluation import segmentation as seg

    key_parts = {"train_part": seg.dataset_hash(Path(split_root) / "train"),
                 "config": {k: getattr(config, k) for k in config.DATA_KEYS}}
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()

    def pairs():
        ds = build_dataset(config, str(split_root), split="train", batch_size=8, shuffle=True, seed=seed,
                           repeat=True, cache=True)
        return ((b["image"].numpy(), b["label_map"].numpy()) for b in ds)

    model, path, loaded = seg.cached_small_segmenter(key, pairs, config.label_nc, steps,
                                                     ignore_index=config.label_nc, seed=seed, width=width,
                                                     cache_dir=cache_dir, progress=progress)
    info = {"segmenter": "built-in small U-Net trained on the training part's real pairs (comparable only "
                         "with itself)", "segmenter_file": str(path), "segmenter_cached": loaded,
            "segmenter_steps": steps, "segmenter_seed": seed, "segmenter_width": width}
    return seg.Segmenter(model), info


class Evaluator:
    """Synthesizes the validation label maps with a generator and measures it."""

    def __init__(self, config, val_labels, val_images, segmenter, extractor, lpips_metric=None,
                 diversity_k: int = 3, diversity_maps: int = 16, kid_subsets: int = 100,
                 kid_subset_size: int = 1000, seed: int = 0, batch_size: int = 16):
        self.config, self.labels, self.segmenter, self.extractor = config, val_labels, segmenter, extractor
        self.lpips_metric, self.diversity_k, self.diversity_maps = lpips_metric, diversity_k, diversity_maps
        self.kid_subsets, self.kid_subset_size, self.seed, self.batch_size = (kid_subsets, kid_subset_size,
                                                                                seed, batch_size)
        real_u8, real_q = quantize(val_images)
        self.real_features = self.features(real_u8)
        self.real_segmentation = self._segmentation(real_q)

    def features(self, images_u8):
        return np.concatenate([self.extractor(images_u8[i:i + self.batch_size])
                               for i in range(0, len(images_u8), self.batch_size)])

    def _segmentation(self, images_q) -> dict:
        from spade_tf.evaluation.segmentation import SegmentationMetrics

        metrics = SegmentationMetrics(self.config.label_nc, ignore_index=self.config.label_nc)
        for i in range(0, len(images_q), self.batch_size):
            labels = self.labels[i:i + self.batch_size]
            pred = self.segmenter.predict_ids(images_q[i:i + self.batch_size], labels.shape[1:])
            metrics.update(pred, labels)
        return metrics.result()

    def synthesize(self, generator, labels, seeds) -> np.ndarray:
        """float32 [B, H, W, 3] in [-1, 1]; VAE models: z from the seeds (Philox, as `spade synthesize`)."""
        from spade_tf.models.semantics import make_semantics

        z = None
        if self.config.use_vae:
            from spade_tf.inference import z_from_seed

            z = z_from_seed(np.asarray(seeds, np.int64), self.config.z_dim)
        out = generator(make_semantics(labels, self.config), z=z, training=False)
        return np.asarray(out, np.float32)

    def __call__(self, generator) -> dict:
        from spade_tf.evaluation import fid

        fakes = [self.synthesize(generator, self.labels[i:i + self.batch_size],
                                 self.seed + i + np.arange(len(self.labels[i:i + self.batch_size])))
                 for i in range(0, len(self.labels), self.batch_size)]
        fake_u8, fake_q = quantize(np.concatenate(fakes))
        out = fid.distances(self.real_features, self.features(fake_u8), self.extractor, self.kid_subsets,
                            self.kid_subset_size, self.seed)
        seg = self._segmentation(fake_q)
        row = {"fd_alexnet": out["fd_alexnet"], "kid_alexnet": out["kid_alexnet"],
               "kid_alexnet_std": out["kid_alexnet_std"], "miou": seg["miou"],
               "pixel_accuracy": seg["pixel_accuracy"], "mean_class_accuracy": seg["mean_class_accuracy"],
               "lpips_diversity": self.diversity(generator)}
        self.last_distances = out
        return row

    def diversity(self, generator):
        """Mean pairwise LPIPS over K samples of each of the first maps (VAE models); None otherwise."""
        if not self.config.use_vae or self.lpips_metric is None or self.diversity_k < 2:
            return None
        from spade_tf.evaluation.lpips import lpips_diversity

        labels = self.labels[: self.diversity_maps]
        samples = [quantize(self.synthesize(generator, labels, self.seed + 10_000 * (j + 1)
                                            + np.arange(len(labels))))[1] for j in range(self.diversity_k)]
        return lpips_diversity(np.stack(samples, axis=1), self.lpips_metric)


# ---- training with evaluation every K steps ----------------------------------------------------
def _variant_config(base, name: str):
    if name not in VARIANTS:
        raise SpadeError(f"unknown variant '{name}'; choose from {sorted(VARIANTS)}")
    return base.with_overrides(VARIANTS[name])


def run_variant(name, config, split_root, steps: int, eval_every: int, seed: int, evaluator: Evaluator,
                perceptual_weights=None, run_eagerly: bool = False, log=print) -> list[dict]:
    """Train `config` from scratch (seeded) for `steps` steps; evaluate at step 0 and every `eval_every`."""
    import keras

    from spade_tf.data import build_dataset, reraise_data_errors
    from spade_tf.models import build_networks
    from spade_tf.training import callbacks as cb
    from spade_tf.training.gaugan import GauGAN
    from spade_tf.training.perceptual import build_perceptual_loss
    from spade_tf.training.schedule import StepLearningRateSchedule

    n_train = len(json.loads((Path(split_root).parent / "split.json").read_text())["train_stems"])
    spe = max(1, n_train // config.batchSize)  # learning-rate epochs, as `spade train`
    keras.utils.set_random_seed(seed)  # same initial weights for every variant
    g, d, e = build_networks(config)
    perceptual = build_perceptual_loss(config, perceptual_weights, allow_download=True)
    model = GauGAN(config, g, d, e, perceptual, seed=seed)
    model.compile(run_eagerly=run_eagerly)
    ds = build_dataset(config, str(split_root), split="train", batch_size=config.batchSize, shuffle=True,
                       seed=seed, repeat=True, drop_remainder=True, cache=True)
    rows: list[dict] = []
    clock = {"train_s": 0.0}

    def record(logs=None):
        t0 = time.perf_counter()
        row = {"variant": name, "step": int(model.step_counter.numpy()),
               "train_s": round(clock["train_s"], 1)}
        row.update(evaluator(model.sampling_generator))
        row["eval_s"] = round(time.perf_counter() - t0, 1)
        for key in ("G_loss", "D_loss"):
            row[key] = float(logs[key]) if logs and key in logs else None
        rows.append(row)
        div = "" if row["lpips_diversity"] is None else f" lpips_div {row['lpips_diversity']:.4f}"
        log(f"[quality] {name} step {row['step']:>6}: fd_alexnet {row['fd_alexnet']:.2f} "
            f"kid_alexnet {row['kid_alexnet']:.4f} mIoU {row['miou']:.4f} pix_acc {row['pixel_accuracy']:.4f}"
            f"{div} (train {row['train_s']:.0f} s, eval {row['eval_s']:.0f} s)")

    class EvalEvery(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            clock["train_s"] += time.perf_counter() - self.t0
            record(logs)

    record()
    guard = cb.NonFiniteLossGuard()
    callbacks = [guard, cb.StopAtStep(steps), StepLearningRateSchedule(config, spe)]
    if model.ema_generator is not None:
        callbacks.append(cb.EMAUpdate())
    callbacks.append(EvalEvery())  # after EMAUpdate, so the epoch's last step is in the EMA weights
    with reraise_data_errors():
        model.fit(ds, epochs=math.ceil(steps / eval_every), steps_per_epoch=eval_every, callbacks=callbacks,
                  verbose=0)
    if guard.failure is not None:
        step, key, value = guard.failure
        log(f"[quality] {name}: loss '{key}' became {value} at step {step}; training stopped there")
        rows[-1]["note"] = f"non-finite {key} at step {step}"
    gc.collect()
    return rows


# ---- outputs --------------------------------------------------------------------------------------
def _fmt(value, digits=4):
    if value is None:
        return "null"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows, columns=("variant", "step", "train_s", "fd_alexnet", "kid_alexnet", "miou",
                                  "pixel_accuracy", "lpips_diversity")) -> str:
    digits = {"fd_alexnet": 2, "train_s": 0}
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" if c == "variant" else "---:"
                                                            for c in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c), digits.get(c, 4)) for c in columns) + " |")
    return "\n".join(lines)


def last_mean(rows, variants, k: int = 3) -> list[dict]:
    """Per variant, the mean of each metric over its last k evaluations ("step" = "first-last")."""
    out = []
    for v in variants:
        mine = sorted((r for r in rows if r["variant"] == v), key=lambda r: r["step"])[-k:]
        if not mine:
            continue
        row = {"variant": v, "step": f"{mine[0]['step']}-{mine[-1]['step']}", "train_s": mine[-1]["train_s"]}
        for key in CSV_COLUMNS[4:]:
            values = [r[key] for r in mine if r.get(key) is not None]
            row[key] = float(np.mean(values)) if values else None
        out.append(row)
    return out


def write_outputs(out_dir, report: dict, plot: bool = True) -> dict:
    """results.csv / results.json / results.md (+ the PNG plot); returns {kind: path}."""
    out_dir = Path(out_dir)
    rows = report["rows"]
    paths = {"csv": out_dir / "results.csv", "json": out_dir / "results.json", "md": out_dir / "results.md"}
    with open(paths["csv"], "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in CSV_COLUMNS})
    paths["json"].write_text(json.dumps(report, indent=1) + "\n")
    final = [max((r for r in rows if r["variant"] == v), key=lambda r: r["step"])
             for v in report["variants"] if any(r["variant"] == v for r in rows)]
    ref = report["reference"]
    md = [f"Final step per variant (validation: {report['split']['n_val']} held-out pairs):", "",
          markdown_table(final), "",
          "Mean of the last 3 evaluations per variant (less noisy than one evaluation on few images):", "",
          markdown_table(last_mean(rows, report["variants"], 3)), "",
          f"Reference: the segmenter on the real validation photos: mIoU {_fmt(ref['real_val_miou'])}, "
          f"pixel accuracy {_fmt(ref['real_val_pixel_accuracy'])}; fd_alexnet between the real training "
          f"and validation photos: {_fmt(ref['fd_alexnet_real_train_vs_val'], 2)}.", "",
          "All evaluations:", "", markdown_table(rows), ""]
    paths["md"].write_text("\n".join(md))
    if plot:
        png = plot_results(rows, out_dir / PLOT_NAME, ref)
        if png is not None:
            paths["png"] = png
    return paths


def plot_results(rows, path, reference=None):
    """Metric-vs-step curves, one line per variant; None (and a note) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[quality] note: matplotlib is not installed (pip install matplotlib): no plot",
              file=sys.stderr)
        return None
    metrics = [("fd_alexnet", "FD (AlexNet relu5), lower is better"),
               ("kid_alexnet", "KID (AlexNet relu5), lower is better"),
               ("miou", "mIoU of the built-in segmenter"), ("pixel_accuracy", "pixel accuracy")]
    if any(r.get("lpips_diversity") is not None for r in rows):
        metrics.append(("lpips_diversity", "LPIPS diversity (VAE)"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    for ax, (key, title) in zip(axes, metrics, strict=True):
        for v in variants:
            pts = [(r["step"], r[key]) for r in rows if r["variant"] == v and r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", markersize=3, label=v)
        if reference and key in ("miou", "pixel_accuracy"):
            ax.axhline(reference[f"real_val_{key}"], color="gray", linestyle="--", linewidth=1,
                       label="real photos")
        if key in ("fd_alexnet", "kid_alexnet"):
            ax.set_yscale("log")  # the untrained step-0 value would flatten the rest
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if reference:
        axes[2].legend(fontsize=7)  # names the dashed line: the segmenter on real photos
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return Path(path)


# ---- the whole benchmark (`spade benchmark quality` parses its options) ---------------------------
def final_rows(report: dict) -> list[dict]:
    """Each variant's row at its last evaluated step (what `spade benchmark quality` prints)."""
    return [max((r for r in report["rows"] if r["variant"] == v), key=lambda r: r["step"])
            for v in report["variants"]]


def run_benchmark(data, out, preset: str = "facades", overrides=(), steps: int = 1000, eval_every: int = 200,
                  val_fraction: float = 0.1, seed: int = 0, variants=("baseline", "no_vgg", "ema"),
                  segmenter_steps: int = 1000, segmenter_width: int = 32, diversity_k: int = 3,
                  diversity_maps: int = 16, kid_subsets: int = 100, kid_subset_size: int = 1000,
                  alexnet_weights=None, perceptual_weights=None, run_eagerly: bool = False,
                  plot: bool = True, command: str = "") -> dict:
    """Split `data`, train the segmenter and each of `variants` (names in VARIANTS) from `preset` +
    `overrides` for `steps` steps, evaluating every `eval_every`; writes the results under `out`."""
    from spade_tf.benchmarks.speed import machine_info
    from spade_tf.config import get_preset
    from spade_tf.evaluation.fid import alexnet_extractor

    if steps < 1 or eval_every < 1:
        raise SpadeError(f"--steps and --eval-every must be >= 1, got {steps} and {eval_every}")
    if isinstance(variants, str):
        variants = variants.split(",")
    variants = [v.strip() for v in variants if v.strip()]
    overrides = list(overrides)
    base = get_preset(preset).with_overrides(overrides)
    configs = {v: _variant_config(base, v) for v in variants}  # fail early on a typo
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    report = {"command": command, "machine": machine_info(), "loadavg_start": list(os.getloadavg()),
              "preset": preset, "overrides": overrides, "steps": steps,
              "eval_every": eval_every, "seed": seed, "variants": variants,
              "variant_overrides": {v: VARIANTS[v] for v in variants}, "config": base.to_dict(),
              "metrics": {"fd_alexnet/kid_alexnet": "Fréchet distance / KID on AlexNet relu5 features "
                                                    "(NOT the standard Inception FID)",
                          "miou/pixel_accuracy": "built-in small U-Net trained on the training part only, "
                                                 "applied to images synthesized from validation label maps",
                          "lpips_diversity": "VAE variants only (mean pairwise LPIPS over K samples per "
                                             "map); null for generators without a latent code"}}
    split_root, split_info = make_split(base, data, out_dir, val_fraction, seed)
    report["split"] = split_info
    print(f"[quality] split: {split_info['n_train']} training / {split_info['n_val']} validation pairs",
          flush=True)

    val_labels, val_images = load_arrays(base, split_root, "val")
    t0 = time.perf_counter()
    segmenter, seg_info = train_segmenter(base, split_root, segmenter_steps, seed,
                                          out_dir / "segmenter", progress=sys.stderr.isatty(),
                                          width=segmenter_width)
    seg_info["segmenter_train_s"] = round(time.perf_counter() - t0, 1)
    extractor = alexnet_extractor(alexnet_weights)
    lpips_metric = None
    if any(c.use_vae for c in configs.values()):
        from spade_tf.evaluation.lpips import LPIPS

        lpips_metric = LPIPS(alexnet_weights)
    evaluator = Evaluator(base, val_labels, val_images, segmenter, extractor, lpips_metric, diversity_k,
                          diversity_maps, kid_subsets, kid_subset_size, seed)
    _, train_images = load_arrays(base, split_root, "train")
    from spade_tf.evaluation import fid

    train_features = evaluator.features(quantize(train_images)[0])
    real_fd = fid.distances(train_features, evaluator.real_features, extractor, kid_subsets,
                            kid_subset_size, seed)
    report["reference"] = {**seg_info, "real_val_miou": evaluator.real_segmentation["miou"],
                           "real_val_pixel_accuracy": evaluator.real_segmentation["pixel_accuracy"],
                           "fd_alexnet_real_train_vs_val": real_fd["fd_alexnet"],
                           "kid_alexnet_real_train_vs_val": real_fd["kid_alexnet"],
                           "feature_network": extractor.network}
    print(f"[quality] segmenter on real validation photos: mIoU {evaluator.real_segmentation['miou']:.4f}; "
          f"fd_alexnet real train vs val {real_fd['fd_alexnet']:.2f}", flush=True)

    report["rows"] = []
    report["variant_wall_s"] = {}
    for name in variants:
        evaluator.config = configs[name]  # the variant's own latent setting (use_vae) when synthesizing
        t0 = time.perf_counter()
        report["rows"] += run_variant(name, configs[name], split_root, steps, eval_every, seed,
                                      evaluator, perceptual_weights, run_eagerly,
                                      log=lambda m: print(m, flush=True))
        report["variant_wall_s"][name] = round(time.perf_counter() - t0, 1)
        evaluator.config = base
        report["loadavg_end"] = list(os.getloadavg())
        report["wall_s"] = round(time.time() - started, 1)
        write_outputs(out_dir, report, plot=plot)  # after each variant: partial results survive
    return report
