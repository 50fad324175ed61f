"""The embedded default dataset: synthetic landscapes generated in code, nothing downloaded.

Eight classes (ids as in `classes.SYNTHETIC`): 0 sky, 1 water, 2 grass, 3 mountain, 4 trees,
5 sand, 6 rock, 7 snow. Each scene has a horizon, often a mountain range (snow-capped when tall),
sometimes a lake with a sand shore, grass below, rocks and trees standing on the ground. Each
class has its own colour and texture statistics (sky: vertical gradient with clouds; water:
horizontal streaks; grass: fine noise; trees: dark blotches; ...), with per-scene colour jitter, so
the mapping label -> photo is learnable but not a lookup table.

Fully vectorised numpy; deterministic from (seed, n, height, width). Measured on a shared, loaded
2-core CPU: 512 scenes of 64x64 in ~1.7 s, of 256x256 in ~24 s (made once per process, cached).
"""

from __future__ import annotations

import functools

import numpy as np

SKY, WATER, GRASS, MOUNTAIN, TREES, SAND, ROCK, SNOW = range(8)
NUM_CLASSES = 8
CHUNK = 32  # scenes generated per vectorised step (bounds memory at large sizes)

# mean colour and per-pixel texture strength of each class (0..255 scale)
_BASE = np.array([
    (110, 165, 230),  # sky (top colour; lighter towards the horizon)
    (35, 85, 150),    # water
    (85, 150, 55),    # grass
    (115, 105, 100),  # mountain
    (30, 75, 35),     # trees
    (215, 190, 135),  # sand
    (95, 92, 90),     # rock
    (240, 242, 250),  # snow
], np.float32)


def _smooth_noise(rng, n, h, w, cells_y, cells_x):
    """Gaussian noise on a coarse grid, bilinearly upsampled -> [n, h, w] (unit-ish std)."""
    grid = rng.standard_normal((n, cells_y + 1, cells_x + 1)).astype(np.float32)
    ys = np.linspace(0, cells_y, h, dtype=np.float32)
    xs = np.linspace(0, cells_x, w, dtype=np.float32)
    y0 = np.minimum(ys.astype(int), cells_y - 1)
    x0 = np.minimum(xs.astype(int), cells_x - 1)
    fy = (ys - y0)[None, :, None]
    fx = (xs - x0)[None, None, :]
    g00 = grid[:, y0][:, :, x0]
    g01 = grid[:, y0][:, :, x0 + 1]
    g10 = grid[:, y0 + 1][:, :, x0]
    g11 = grid[:, y0 + 1][:, :, x0 + 1]
    top = g00 * (1 - fx) + g01 * fx
    bottom = g10 * (1 - fx) + g11 * fx
    return top * (1 - fy) + bottom * fy


def _curve(rng, n, x, amplitude, freqs=(1.0, 2.3, 5.1)):
    """Smooth random 1-D curve over x [1, 1, W] -> [n, 1, W]."""
    out = np.zeros((n, 1, x.shape[-1]), np.float32)
    for f in freqs:
        phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
        amp = rng.uniform(0.3, 1.0, (n, 1, 1)) / f
        out += (amp * np.sin(2 * np.pi * f * x * rng.uniform(0.7, 1.3, (n, 1, 1)) + phase)).astype(np.float32)
    return amplitude * out


def _ellipses(rng, n, k, y, x, cy, cx, ry, rx, active):
    """Boolean masks [n, k, H, W] of k ellipses per scene (params [n, k])."""
    f32 = np.float32
    dy = (y[:, None] - cy[..., None, None].astype(f32)) / ry[..., None, None].astype(f32)  # [n,k,H,1]
    dx = (x[:, None] - cx[..., None, None].astype(f32)) / rx[..., None, None].astype(f32)  # [n,k,1,W]
    # a little wobble on the outline so blobs are not perfect ellipses
    phase = rng.uniform(0, 6.3, (n, k, 1, 1)).astype(f32)
    wobble = 1.0 + 0.15 * np.sin(5 * dx + phase) * np.cos(4 * dy + phase)
    return ((dy * dy + dx * dx) < wobble) & active[..., None, None]


def _layout(rng, n, h, w):
    """Label ids uint8 [n, H, W] and instance ids int32 [n, H, W]."""
    y = (np.arange(h, dtype=np.float32)[None, :, None] + 0.5) / h
    x = (np.arange(w, dtype=np.float32)[None, None, :] + 0.5) / w
    label = np.full((n, h, w), SKY, np.uint8)
    instance = np.zeros((n, h, w), np.int32)

    horizon = rng.uniform(0.35, 0.62, (n, 1, 1)).astype(np.float32)
    has_water = rng.random((n, 1, 1)) < 0.55
    # without water the horizon is a line of low hills
    ground_top = horizon + np.where(has_water, 0.0, _curve(rng, n, x, 0.04))

    # mountains: a few triangular peaks with jagged edges, behind the ground
    has_mtn = rng.random((n, 1, 1)) < 0.75
    peak_h = rng.uniform(0.2, 0.55, (n, 1, 1)).astype(np.float32) * horizon
    centres = rng.uniform(-0.1, 1.1, (n, 4, 1)).astype(np.float32)
    widths = rng.uniform(0.15, 0.5, (n, 4, 1)).astype(np.float32)
    heights = rng.uniform(0.35, 1.0, (n, 4, 1)).astype(np.float32)
    tent = np.clip(1 - np.abs(x[:, 0] - centres) / widths, 0, None) * heights  # [n, 4, W]
    profile = tent.max(axis=1, keepdims=True) + _curve(rng, n, x, 0.04, (7.0, 13.0))
    ridge = horizon - peak_h * np.clip(profile, 0, None)  # [n, 1, W]
    mountain = has_mtn & (y >= ridge) & (y < ground_top)
    label[mountain] = MOUNTAIN
    snowline = horizon - peak_h * rng.uniform(0.4, 0.7, (n, 1, 1)) + _curve(rng, n, x, 0.02, (9.0,))
    snow = mountain & (y < snowline) & (rng.random((n, 1, 1)) < 0.7)
    label[snow] = SNOW

    # ground: lake + sand shore + grass, or grass (sometimes with a sand patch) only
    shore = horizon + rng.uniform(0.1, 0.45, (n, 1, 1)) * (1 - horizon) + _curve(rng, n, x, 0.04)
    beach = rng.uniform(0.02, 0.09, (n, 1, 1)) * (rng.random((n, 1, 1)) < 0.7)
    ground = y >= ground_top
    water = ground & has_water & (y < shore)
    sand = ground & has_water & (y >= shore) & (y < shore + beach)
    label[ground] = GRASS
    label[water] = WATER
    label[sand] = SAND
    grass_top = np.where(has_water, shore.max(axis=2, keepdims=True) + beach, ground_top.max(axis=2,
                                                                                              keepdims=True))
    grass_top = grass_top[..., 0]  # [n, 1]

    def on_grass(k, lo_extra):
        lo = np.minimum(grass_top + lo_extra, 0.97)
        return (lo + rng.random((n, k)) * (1 - lo)).astype(np.float32)

    # rocks, then trees (painted last: in front of everything)
    k_rock = 4
    base = on_grass(k_rock, 0.03)
    rx = rng.uniform(0.03, 0.09, (n, k_rock)) * (0.6 + (base - horizon[..., 0]))
    ry = rx * rng.uniform(0.5, 0.85, (n, k_rock))
    masks = _ellipses(rng, n, k_rock, y, x, base - ry * 0.5, rng.random((n, k_rock)), ry, rx,
                      rng.random((n, k_rock)) < 0.5)
    for i in range(k_rock):
        label[masks[:, i]] = ROCK
        instance[masks[:, i]] = 100 + i

    k_tree = 7
    base = on_grass(k_tree, 0.02)
    depth = 0.5 + (base - horizon[..., 0]) / (1 - horizon[..., 0])
    rx = rng.uniform(0.035, 0.09, (n, k_tree)) * depth
    ry = rx * rng.uniform(1.3, 2.4, (n, k_tree))
    density = rng.uniform(0.0, 0.8, (n, 1))
    masks = _ellipses(rng, n, k_tree, y, x, base - ry * 0.85, rng.random((n, k_tree)), ry, rx,
                      rng.random((n, k_tree)) < density)
    order = np.argsort(base, axis=1)  # far trees first, near trees drawn over them
    for j in range(k_tree):
        m = masks[np.arange(n), order[:, j]]
        label[m] = TREES
        instance[m] = 200 + j
    instance += label.astype(np.int32) * 1000
    return label, instance, horizon


def _paint(rng, label, horizon):
    """RGB uint8 [n, H, W, 3] for label ids, with class colour + texture statistics."""
    n, h, w = label.shape
    f32 = np.float32
    jitter = rng.normal(0, 12, (n, NUM_CLASSES, 3)).astype(f32)
    base = _BASE[None] + jitter  # [n, C, 3] per-scene class colours
    fine = rng.standard_normal((n, h, w)).astype(f32)
    mid = _smooth_noise(rng, n, h, w, 8, 8)
    coarse = _smooth_noise(rng, n, h, w, 3, 3)
    streak = _smooth_noise(rng, n, h, w, max(h // 3, 1), 2)  # long horizontal streaks
    clouds = np.clip(_smooth_noise(rng, n, h, w, 4, 6) - 0.6, 0, 1)
    y = ((np.arange(h, dtype=f32) + 0.5) / h)[None, :, None]
    depth = np.broadcast_to(y - horizon, (n, h, w))  # < 0 above the horizon
    sky_t = np.clip(np.broadcast_to(y / horizon, (n, h, w)), 0, 1)  # 0 at the top, 1 at the horizon

    image = np.zeros((n, h, w, 3), f32)
    for c in range(NUM_CLASSES):
        where = np.nonzero(label == c)
        if not where[0].size:
            continue
        colour = base[where[0], c]  # [P, 3]
        fi, mi = fine[where][:, None], mid[where][:, None]
        if c == SKY:
            t, cl = sky_t[where][:, None], clouds[where][:, None]
            value = (colour * (1 - t) + (colour * 0.45 + 140) * t) * (1 - cl) + 245 * cl
        elif c == WATER:
            value = colour + 22 * streak[where][:, None] + 4 * fi
        elif c == GRASS:
            value = colour + np.array([10, 22, 8], f32) * mi + 14 * fi
        elif c == MOUNTAIN:
            value = colour + 18 * mi + 8 * fi - 25 * depth[where][:, None]
        elif c == TREES:
            value = colour * (1 + 0.35 * mi) + 10 * fi
        elif c == SAND:
            value = colour + 8 * coarse[where][:, None] + 7 * fi
        elif c == ROCK:
            value = colour + 25 * fi + 15 * mi
        else:  # SNOW
            value = colour + 4 * fi - 8 * np.abs(mi)
        image[where] = value
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def generate(n: int, height: int, width: int, seed: int = 0):
    """(photos uint8 [n,H,W,3], labels uint8 [n,H,W], instances int32 [n,H,W]), deterministic.

    Scenes are made CHUNK at a time, each chunk from its own seed, so scene i does not depend on n.
    """
    photos, labels, instances = [], [], []
    for start in range(0, n, CHUNK):
        rng = np.random.default_rng([seed, start])
        count = CHUNK
        label, instance, horizon = _layout(rng, count, height, width)
        photo = _paint(rng, label, horizon)
        keep = min(CHUNK, n - start)
        photos.append(photo[:keep])
        labels.append(label[:keep])
        instances.append(instance[:keep])
    out = np.concatenate(photos), np.concatenate(labels), np.concatenate(instances)
    for array in out:  # cached and shared between callers: nobody may change them in place
        array.setflags(write=False)
    return out


def blocky_ids(batch: int, height: int, width: int, classes, seed: int = 0) -> np.ndarray:
    """int32 [batch, height, width] random label maps of 8x8 blocks (closer to real maps than
    per-pixel noise), for checks, calibration and benchmarks. classes: a count n (ids 0..n-1) or a
    sequence of the ids to draw from."""
    rng = np.random.default_rng(seed)
    shape = (batch, -(-height // 8), -(-width // 8))
    coarse = rng.integers(0, classes, shape) if isinstance(classes, int) else rng.choice(classes, shape)
    return np.repeat(np.repeat(coarse, 8, 1), 8, 2)[:, :height, :width].astype(np.int32)
