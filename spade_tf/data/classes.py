"""Class tables (id, name, colour) of every preset, and `colorize` for showing label maps.

Ids are the values a label map holds *after* loading (don't care → `label_nc`). Names are the
datasets' public class lists. Colours: the synthetic and facades tables have their own colours (facades:
the CMP source palette from `shared/data/facades/README.md`), ADE20K uses the palette of the CSAIL
scene-parsing benchmark, Cityscapes the colours of `cityscapesScripts/labels.py`; COCO-Stuff uses a
deterministic palette of ours (not the dataset's own colours).
"""

from __future__ import annotations

import colorsys

import numpy as np

from spade_tf.errors import SpadeError

SYNTHETIC = (
    ("sky", (110, 170, 235)),
    ("water", (30, 90, 170)),
    ("grass", (80, 160, 60)),
    ("mountain", (120, 110, 100)),
    ("trees", (25, 80, 35)),
    ("sand", (225, 200, 140)),
    ("rock", (90, 90, 95)),
    ("snow", (245, 245, 250)),
)

# CMP facades: id 0 never occurs (its channel stays empty), ids 1..12 as stored.
FACADES = (
    ("unused", (0, 0, 0)),
    ("background", (0, 0, 170)), ("facade", (0, 0, 255)), ("window", (0, 85, 255)),
    ("door", (0, 170, 255)), ("cornice", (0, 255, 255)), ("sill", (85, 255, 170)),
    ("balcony", (170, 255, 85)), ("blind", (255, 255, 0)), ("deco", (255, 170, 0)),
    ("molding", (255, 85, 0)), ("pillar", (255, 0, 0)), ("shop", (170, 0, 0)),
)

# Cityscapes labelIds 0..33 (cityscapesScripts) + 34 = license plate (id -1 there); label_nc 35.
CITYSCAPES = (
    ("unlabeled", (0, 0, 0)), ("ego vehicle", (0, 0, 0)), ("rectification border", (0, 0, 0)),
    ("out of roi", (0, 0, 0)), ("static", (0, 0, 0)), ("dynamic", (111, 74, 0)), ("ground", (81, 0, 81)),
    ("road", (128, 64, 128)), ("sidewalk", (244, 35, 232)), ("parking", (250, 170, 160)),
    ("rail track", (230, 150, 140)), ("building", (70, 70, 70)), ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)), ("guard rail", (180, 165, 180)), ("bridge", (150, 100, 100)),
    ("tunnel", (150, 120, 90)), ("pole", (153, 153, 153)), ("polegroup", (153, 153, 153)),
    ("traffic light", (250, 170, 30)), ("traffic sign", (220, 220, 0)), ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)), ("sky", (70, 130, 180)), ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)), ("car", (0, 0, 142)), ("truck", (0, 0, 70)), ("bus", (0, 60, 100)),
    ("caravan", (0, 0, 90)), ("trailer", (0, 0, 110)), ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)), ("bicycle", (119, 11, 32)), ("license plate", (0, 0, 142)),
)

# COCO-Stuff label PNG values 0..181 (= labels.txt id - 1): 91 thing ids (11 unused in COCO) + 91 stuff.
COCO_THINGS = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant street_sign "
    "stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe hat backpack "
    "umbrella shoe eye_glasses handbag tie suitcase frisbee skis snowboard sports_ball kite baseball_bat "
    "baseball_glove skateboard surfboard tennis_racket bottle plate wine_glass cup fork knife spoon bowl "
    "banana apple sandwich orange broccoli carrot hot_dog pizza donut cake chair couch potted_plant bed "
    "mirror dining_table window desk toilet door tv laptop mouse remote keyboard cell_phone microwave oven "
    "toaster sink refrigerator blender book clock vase scissors teddy_bear hair_drier toothbrush hair_brush"
).split()
COCO_STUFF = (
    "banner blanket branch bridge building-other bush cabinet cage cardboard carpet ceiling-other "
    "ceiling-tile cloth clothes clouds counter cupboard curtain desk-stuff dirt door-stuff fence "
    "floor-marble floor-other floor-stone floor-tile floor-wood flower fog food-other fruit "
    "furniture-other grass gravel ground-other hill house leaves light mat metal mirror-stuff moss "
    "mountain mud napkin net paper pavement pillow plant-other plastic platform playingfield railing "
    "railroad river road rock roof rug salad sand sea shelf sky-other skyscraper snow solid-other stairs "
    "stone straw structural-other table tent textile-other towel tree vegetable wall-brick wall-concrete "
    "wall-other wall-panel wall-stone wall-tile wall-wood water-other waterdrops window-blind "
    "window-other wood"
).split()

ADE20K_NAMES = (
    "wall|building|sky|floor|tree|ceiling|road|bed|windowpane|grass|cabinet|sidewalk|person|earth|door|"
    "table|mountain|plant|curtain|chair|car|water|painting|sofa|shelf|house|sea|mirror|rug|field|armchair|"
    "seat|fence|desk|rock|wardrobe|lamp|bathtub|railing|cushion|base|box|column|signboard|"
    "chest of drawers|counter|sand|sink|skyscraper|fireplace|refrigerator|grandstand|path|stairs|runway|"
    "case|pool table|pillow|screen door|stairway|river|bridge|bookcase|blind|coffee table|toilet|flower|"
    "book|hill|bench|countertop|stove|palm|kitchen island|computer|swivel chair|boat|bar|arcade machine|"
    "hovel|bus|towel|light|truck|tower|chandelier|awning|streetlight|booth|television receiver|airplane|"
    "dirt track|apparel|pole|land|bannister|escalator|ottoman|bottle|buffet|poster|stage|van|ship|"
    "fountain|conveyer belt|canopy|washer|plaything|swimming pool|stool|barrel|basket|waterfall|tent|bag|"
    "minibike|cradle|oven|ball|food|step|tank|trade name|microwave|pot|animal|bicycle|lake|dishwasher|"
    "screen|blanket|sculpture|hood|sconce|vase|traffic light|tray|ashcan|fan|pier|crt screen|plate|"
    "monitor|bulletin board|shower|radiator|glass|clock|flag"
).split("|")
# CSAIL scene-parsing palette, in the order of ADE20K_NAMES.
_ADE = (
    "120,120,120 180,120,120 6,230,230 80,50,50 4,200,3 120,120,80 140,140,140 204,5,255 230,230,230 "
    "4,250,7 224,5,255 235,255,7 150,5,61 120,120,70 8,255,51 255,6,82 143,255,140 204,255,4 255,51,7 "
    "204,70,3 0,102,200 61,230,250 255,6,51 11,102,255 255,7,71 255,9,224 9,7,230 220,220,220 255,9,92 "
    "112,9,255 8,255,214 7,255,224 255,184,6 10,255,71 255,41,10 7,255,255 224,255,8 102,8,255 255,61,6 "
    "255,194,7 255,122,8 0,255,20 255,8,41 255,5,153 6,51,255 235,12,255 160,150,20 0,163,255 "
    "140,140,140 250,10,15 20,255,0 31,255,0 255,31,0 255,224,0 153,255,0 0,0,255 255,71,0 0,235,255 "
    "0,173,255 31,0,255 11,200,200 255,82,0 0,255,245 0,61,255 0,255,112 0,255,133 255,0,0 255,163,0 "
    "255,102,0 194,255,0 0,143,255 51,255,0 0,82,255 0,255,41 0,255,173 10,0,255 173,255,0 0,255,153 "
    "255,92,0 255,0,255 255,0,245 255,0,102 255,173,0 255,0,20 255,184,184 0,31,255 0,255,61 0,71,255 "
    "255,0,204 0,255,194 0,255,82 0,10,255 0,112,255 51,0,255 0,194,255 0,122,255 0,255,163 255,153,0 "
    "0,255,10 255,112,0 143,255,0 82,0,255 163,255,0 255,235,0 8,184,170 133,0,255 0,255,92 184,0,255 "
    "255,0,31 0,184,255 0,214,255 255,0,112 92,255,0 0,224,255 112,224,255 70,184,160 163,0,255 "
    "153,0,255 71,255,0 255,0,163 255,204,0 255,0,143 0,255,235 133,255,0 255,0,235 245,0,255 255,0,122 "
    "255,245,0 10,190,212 214,255,0 0,204,255 20,0,255 255,255,0 0,153,255 0,41,255 0,255,204 41,0,255 "
    "41,255,0 173,0,255 0,245,255 71,0,255 122,0,255 0,255,184 0,92,255 184,255,0 0,133,255 255,214,0 "
    "25,194,194 102,255,0 92,0,255"
)
ADE20K_COLOURS = tuple(tuple(int(v) for v in c.split(",")) for c in _ADE.split())
DONT_CARE_COLOUR = (0, 0, 0)


def palette(n: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """n well-spread, deterministic colours (golden-ratio hues, alternating lightness)."""
    out = []
    for i in range(n):
        hue = (seed * 0.1 + i * 0.618033988749895) % 1.0
        light = (0.45, 0.6, 0.35)[i % 3]
        sat = (0.9, 0.65)[(i // 3) % 2]
        r, g, b = colorsys.hls_to_rgb(hue, light, sat)
        out.append((round(r * 255), round(g * 255), round(b * 255)))
    return out


def _table(names, colours) -> list[tuple[int, str, tuple[int, int, int]]]:
    return [(i, n, tuple(c)) for i, (n, c) in enumerate(zip(names, colours, strict=True))]


def _known_tables() -> dict[str, list]:
    coco = [n.replace("_", " ") for n in COCO_THINGS] + COCO_STUFF
    ade_names = ["other"] + ADE20K_NAMES  # id 0 = "other" (see layouts.py on ADE20K ids)
    ade_colours = [DONT_CARE_COLOUR] + list(ADE20K_COLOURS)
    return {
        "synthetic": _table([n for n, _ in SYNTHETIC], [c for _, c in SYNTHETIC]),
        "facades": _table([n for n, _ in FACADES], [c for _, c in FACADES]),
        "cityscapes": _table([n for n, _ in CITYSCAPES], [c for _, c in CITYSCAPES]),
        "coco": _table(coco, palette(len(coco))),
        "ade20k": _table(ade_names, ade_colours),
    }


_BY_PRESET = {"tiny": "synthetic", "cocostuff": "coco"}


def class_table(config_or_preset) -> list[tuple[int, str, tuple[int, int, int]]]:
    """[(id, name, (r, g, b))] for every id a loaded label map can hold (0 .. num_label_channels-1).

    Accepts a `SPADEConfig` or a preset / dataset-mode name. Unknown datasets (custom) get
    "class <i>" names and the deterministic palette; a don't-care id is named "don't care".
    """
    if isinstance(config_or_preset, str):
        from spade_tf.config import get_preset

        key = _BY_PRESET.get(config_or_preset, config_or_preset)
        config = get_preset(config_or_preset) if config_or_preset in _preset_names() else None
    else:
        config = config_or_preset
        key = _BY_PRESET.get(config.name, config.dataset_mode)
    tables = _known_tables()
    if config is None:
        if key not in tables:
            raise SpadeError(f"no class table for '{config_or_preset}'; known: {sorted(tables)}")
        return tables[key]
    n = config.num_label_channels
    table = list(tables.get(key, []))[: config.label_nc]
    colours = palette(n)
    for i in range(len(table), config.label_nc):
        table.append((i, f"class {i}", colours[i]))
    if config.contain_dontcare_label:
        if key == "ade20k":  # ADE id 150 is the class "flag" (official: ids used as stored)
            table.append((config.label_nc, tables["ade20k"][config.label_nc][1] + " / don't care",
                          tables["ade20k"][config.label_nc][2]))
        else:
            table.append((config.label_nc, "don't care", DONT_CARE_COLOUR))
    return table


def _preset_names() -> set[str]:
    from spade_tf.config import PRESETS

    return set(PRESETS)


def colorize(label_map, config) -> np.ndarray:
    """uint8 RGB [..., H, W, 3] for integer label ids [..., H, W] (numpy or tensor).

    Ids outside the table (should not happen after loading) are drawn white.
    """
    ids = np.asarray(label_map).astype(np.int64)
    if ids.ndim >= 3 and ids.shape[-1] == 1 and ids.ndim != 2:
        ids = ids[..., 0]
    lut = np.full((max(256, config.num_label_channels + 1), 3), 255, np.uint8)
    for i, _, colour in class_table(config):
        lut[i] = colour
    return lut[np.clip(ids, 0, len(lut) - 1)]
