"""Configuration: one frozen dataclass, named presets, `key=value` overrides.

Field names follow the official SPADE options (`options/*.py` in NVlabs/SPADE) wherever one
exists, so `--set crop_size=64` means what a SPADE user expects. Defaults are the official
defaults; presets apply the official dataset-mode defaults (`data/*_dataset.py`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from spade_tf.errors import SpadeError

UPSAMPLING_LAYERS = {"normal": 5, "more": 6, "most": 7}
PREPROCESS_MODES = (
    "resize_and_crop",
    "crop",
    "scale_width",
    "scale_width_and_crop",
    "scale_shortside",
    "scale_shortside_and_crop",
    "fixed",
    "none",
)
GAN_MODES = ("hinge", "ls", "original", "w")
PERCEPTUAL_BACKBONES = ("vgg19", "alexnet")
GENERATORS = ("spade", "spade_lite")
_SPADE_NORM = re.compile(r"^(spectral)?spade(syncbatch|batch|instance)(\d)x\d$")
_PLAIN_NORM = re.compile(r"^(spectral)?(instance|batch|syncbatch|none)?$")


@dataclasses.dataclass(frozen=True)
class SPADEConfig:
    """Everything that defines a GauGAN model and how it is trained.

    Derived values (`semantic_nc`, latent size, SPADE kernel size, ...) are properties, never
    fields, so they cannot disagree with the fields they come from.
    """

    name: str = "custom"
    dataset_mode: str = "custom"
    # labels
    label_nc: int = 182  # classes, not counting the don't-care label
    contain_dontcare_label: bool = False  # label 255 becomes class `label_nc` (one more channel)
    no_instance: bool = False  # True: no instance-edge channel
    output_nc: int = 3
    # sizes
    crop_size: int = 512
    load_size: int = 1024
    aspect_ratio: float = 1.0  # width / height
    preprocess_mode: str = "scale_width_and_crop"
    no_flip: bool = False
    # generator
    ngf: int = 64
    z_dim: int = 256
    use_vae: bool = False
    num_upsampling_layers: str = "normal"
    norm_G: str = "spectralspadesyncbatch3x3"
    spade_nhidden: int = 128  # SPADE MLP width; fixed at 128 in the official code
    # lite generator (ours; `spade distill`): netG 'spade' (official) or 'spade_lite', whose channel
    # widths (ngf and spade_nhidden) are scaled by `width`, with depthwise-separable 3x3 convs when
    # `separable`
    netG: str = "spade"  # noqa: N815 - official option name
    width: float = 1.0
    separable: bool = False
    init_type: str = "xavier"
    init_variance: float = 0.02
    # discriminator / encoder
    ndf: int = 64
    num_D: int = 2
    n_layers_D: int = 4
    norm_D: str = "spectralinstance"
    norm_E: str = "spectralinstance"
    # losses
    gan_mode: str = "hinge"
    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0
    lambda_kld: float = 0.05
    perceptual_backbone: str = "vgg19"  # "alexnet": offline LPIPS AlexNet features
    # optimisation (official defaults; TTUR on)
    batchSize: int = 1  # noqa: N815 - official option name
    lr: float = 0.0002
    beta1: float = 0.0
    beta2: float = 0.9
    no_TTUR: bool = False  # noqa: N815 - official option name
    niter: int = 50
    niter_decay: int = 0
    D_steps_per_G: int = 1  # noqa: N815 - official option name
    # ours (not in the official code)
    synthetic_size: int = 512  # examples in the embedded synthetic dataset (no --data)
    use_ema: bool = False
    ema_decay: float = 0.999

    # Which fields must agree, by purpose (class attributes, not fields); compare two configs with
    # `differences`. LABEL_KEYS: what the label channels mean. ARCHITECTURE_KEYS: the generator's (and
    # encoder's) weight shapes; OUR_ARCHITECTURE_KEYS are among them but not official options.
    # DATA_KEYS: what the data pipeline's photos and label maps look like.
    LABEL_KEYS = ("label_nc", "contain_dontcare_label", "no_instance")
    OUR_ARCHITECTURE_KEYS = ("spade_nhidden", "width", "separable")
    ARCHITECTURE_KEYS = (*LABEL_KEYS, "output_nc", "crop_size", "aspect_ratio", "ngf", "z_dim", "use_vae",
                         "num_upsampling_layers", "norm_G", "netG", *OUR_ARCHITECTURE_KEYS)
    DATA_KEYS = ("dataset_mode", "label_nc", "contain_dontcare_label", "crop_size", "load_size",
                 "aspect_ratio", "preprocess_mode")

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> SpadeError:
            return SpadeError(f"config key '{key}': {why}")

        if self.label_nc < 1:
            raise bad("label_nc", f"must be >= 1, got {self.label_nc}")
        if self.num_upsampling_layers not in UPSAMPLING_LAYERS:
            raise bad("num_upsampling_layers", f"must be one of {sorted(UPSAMPLING_LAYERS)}, got "
                      f"'{self.num_upsampling_layers}'")
        if self.preprocess_mode not in PREPROCESS_MODES:
            raise bad("preprocess_mode", f"must be one of {PREPROCESS_MODES}, got '{self.preprocess_mode}'")
        if self.gan_mode not in GAN_MODES:
            raise bad("gan_mode", f"must be one of {GAN_MODES}, got '{self.gan_mode}'")
        if self.perceptual_backbone not in PERCEPTUAL_BACKBONES:
            raise bad("perceptual_backbone", f"must be one of {PERCEPTUAL_BACKBONES}, got "
                      f"'{self.perceptual_backbone}'")
        if not _SPADE_NORM.match(self.norm_G):
            raise bad("norm_G", "must look like 'spectralspadesyncbatch3x3' "
                      "([spectral]spade{syncbatch|batch|instance}<k>x<k>), got " f"'{self.norm_G}'")
        for key in ("norm_D", "norm_E"):
            if not _PLAIN_NORM.match(getattr(self, key)):
                raise bad(key, "must be [spectral]{instance|batch|syncbatch|none}, got "
                          f"'{getattr(self, key)}'")
        for key in ("ngf", "ndf", "num_D", "n_layers_D", "z_dim", "spade_nhidden", "crop_size",
                    "batchSize", "D_steps_per_G"):
            if getattr(self, key) < 1:
                raise bad(key, f"must be >= 1, got {getattr(self, key)}")
        if self.netG not in GENERATORS:
            raise bad("netG", f"must be one of {GENERATORS}, got '{self.netG}'")
        if not 0 < self.width <= 1:
            raise bad("width", f"must be in (0, 1], got {self.width}")
        if self.netG == "spade" and (self.width != 1 or self.separable):
            raise bad("netG", "width and separable apply to netG=spade_lite; set netG=spade_lite")
        if self.aspect_ratio <= 0:
            raise bad("aspect_ratio", f"must be > 0, got {self.aspect_ratio}")
        if self.latent_size[0] < 1 or self.latent_size[1] < 1:
            raise bad("crop_size", f"crop_size={self.crop_size} with num_upsampling_layers="
                      f"'{self.num_upsampling_layers}' and aspect_ratio={self.aspect_ratio} gives a "
                      f"latent grid of {self.latent_size}; use a larger crop_size")
        if self.image_size != self.crop_shape:
            raise bad("crop_size", self._size_mismatch())

    # ---- derived values -------------------------------------------------------------------
    @property
    def semantic_nc(self) -> int:
        """Generator input channels: classes (+ don't care) (+ instance edges)."""
        return self.label_nc + int(self.contain_dontcare_label) + int(not self.no_instance)

    @property
    def use_instance_edges(self) -> bool:
        return not self.no_instance

    @property
    def num_label_channels(self) -> int:
        """One-hot channels of the label map alone (no edge channel)."""
        return self.label_nc + int(self.contain_dontcare_label)

    @property
    def latent_size(self) -> tuple[int, int]:
        """(sh, sw): the generator's first feature grid, as official `compute_latent_vector_size`."""
        sw = self.crop_size // (2 ** UPSAMPLING_LAYERS[self.num_upsampling_layers])
        sh = round(sw / self.aspect_ratio)
        return sh, sw

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the generated image."""
        sh, sw = self.latent_size
        scale = 2 ** UPSAMPLING_LAYERS[self.num_upsampling_layers]
        return sh * scale, sw * scale

    @property
    def crop_shape(self) -> tuple[int, int]:
        """(round(crop_size / aspect_ratio), crop_size): the (height, width) crop_size and
        aspect_ratio describe (the data size of preprocess_mode 'fixed'). The config refuses values
        for which the generator's `image_size` differs."""
        return round(self.crop_size / self.aspect_ratio), self.crop_size

    def _size_mismatch(self) -> str:
        """Why image_size != crop_shape, and the nearest crop_size / aspect_ratio values that work."""
        scale = 2 ** UPSAMPLING_LAYERS[self.num_upsampling_layers]
        ratio = self.aspect_ratio

        def fits(crop: int) -> bool:
            sh = round(crop // scale / ratio)
            return sh >= 1 and round(crop / ratio) == sh * scale

        k = self.crop_size // scale
        below = next((m * scale for m in range(k, 0, -1) if fits(m * scale)), None)
        above = next((m * scale for m in range(k + 1, 2 * k + 9) if fits(m * scale)), None)
        crops = " or ".join(str(c) for c in (below, above) if c is not None) or "none nearby"
        (h, w), (dh, dw) = self.image_size, self.crop_shape
        text = (f"crop_size={self.crop_size} with aspect_ratio={ratio} asks for {dw}x{dh} (WxH) images, but "
                f"the generator (num_upsampling_layers='{self.num_upsampling_layers}': a "
                f"{self.latent_size[1]}x{self.latent_size[0]} latent grid of {scale}-pixel cells) makes "
                f"{w}x{h}. crop_size and crop_size / aspect_ratio must both be multiples of {scale}: "
                f"nearest valid crop_size for aspect_ratio={ratio}: {crops}")
        if w == self.crop_size:  # only the height is off: name the aspect ratios that fit this width
            heights = sorted({max(scale, dh // scale * scale), (dh // scale + 1) * scale})
            ratios = " or ".join(f"{w / hh:.6g} ({w}x{hh})" for hh in heights)
            text += f"; or keep crop_size={w} with aspect_ratio {ratios}"
        return text

    @property
    def spade_param_free_norm(self) -> str:
        """'syncbatch', 'batch' or 'instance' (from norm_G)."""
        return _SPADE_NORM.match(self.norm_G).group(2)

    @property
    def spade_kernel_size(self) -> int:
        return int(_SPADE_NORM.match(self.norm_G).group(3))

    @property
    def spectral_G(self) -> bool:
        return self.norm_G.startswith("spectral")

    @property
    def spectral_D(self) -> bool:
        return self.norm_D.startswith("spectral")

    @property
    def spectral_E(self) -> bool:
        return self.norm_E.startswith("spectral")

    @property
    def norm_D_type(self) -> str:
        return self.norm_D.replace("spectral", "") or "none"

    @property
    def norm_E_type(self) -> str:
        return self.norm_E.replace("spectral", "") or "none"

    @property
    def learning_rates(self) -> tuple[float, float]:
        """(generator lr, discriminator lr): TTUR halves G's and doubles D's, as official."""
        if self.no_TTUR:
            return self.lr, self.lr
        return self.lr / 2, self.lr * 2

    @property
    def adam_betas(self) -> tuple[float, float]:
        """TTUR forces (0, 0.9) as official; without TTUR, (beta1, beta2)."""
        if self.no_TTUR:
            return self.beta1, self.beta2
        return 0.0, 0.9

    # ---- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> SPADEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SpadeError(f"{source}: unknown config key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**values)

    def differences(self, other: SPADEConfig, keys) -> list[tuple[str, Any, Any]]:
        """(key, value here, value in `other`) for each of `keys` where the two configs disagree."""
        pairs = ((k, getattr(self, k), getattr(other, k)) for k in keys)
        return [(k, mine, theirs) for k, mine, theirs in pairs if mine != theirs]

    def replace(self, **changes: Any) -> SPADEConfig:
        return self.from_dict({**self.to_dict(), **changes}, source="override")

    def with_overrides(self, overrides: list[str] | dict[str, Any]) -> SPADEConfig:
        """Apply `key=value` strings (as `--set`) or a dict; values are parsed by field type."""
        if isinstance(overrides, dict):
            pairs = list(overrides.items())
        else:
            pairs = []
            for item in overrides:
                if "=" not in item:
                    raise SpadeError(f"override '{item}': expected key=value, e.g. crop_size=64")
                key, value = item.split("=", 1)
                pairs.append((key.strip(), value.strip()))
        types = {f.name: f.type for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for key, value in pairs:
            if key == "use_instance_edges":  # friendly alias of the official `no_instance`
                key, value = "no_instance", not _parse_bool(key, value)
            if key not in types:
                raise SpadeError(f"override '{key}': unknown config key; known keys: {sorted(types)}")
            changes[key] = _parse_value(key, value, types[key])
        return self.replace(**changes)


def _parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SpadeError(f"override '{key}': expected true/false, got '{value}'")


def _parse_value(key: str, value: Any, type_name: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if type_name == "bool":
            return _parse_bool(key, value)
        if type_name == "int":
            return int(value)
        if type_name == "float":
            return float(value)
    except ValueError:
        raise SpadeError(f"override '{key}': expected {type_name}, got '{value}'") from None
    return value


# Official dataset-mode defaults (data/*_dataset.py), training side.
PRESETS: dict[str, SPADEConfig] = {
    "ade20k": SPADEConfig(
        name="ade20k", dataset_mode="ade20k", label_nc=150, contain_dontcare_label=True,
        no_instance=True, preprocess_mode="resize_and_crop", load_size=286, crop_size=256),
    "cocostuff": SPADEConfig(
        name="cocostuff", dataset_mode="coco", label_nc=182, contain_dontcare_label=True,
        no_instance=False, preprocess_mode="resize_and_crop", load_size=286, crop_size=256),
    "cityscapes": SPADEConfig(
        name="cityscapes", dataset_mode="cityscapes", label_nc=35, contain_dontcare_label=False,
        no_instance=False, preprocess_mode="fixed", load_size=512, crop_size=512, aspect_ratio=2.0,
        num_upsampling_layers="more", batchSize=16),
    # CMP facades: ids 1..12 as stored (id 0 never occurs; its channel stays empty), no instances.
    "facades": SPADEConfig(
        name="facades", dataset_mode="facades", label_nc=13, contain_dontcare_label=False,
        no_instance=True, preprocess_mode="resize_and_crop", load_size=286, crop_size=256),
    # Custom folders, as the official `custom` mode: you set label_nc for your data.
    "custom": SPADEConfig(
        name="custom", dataset_mode="custom", label_nc=182, contain_dontcare_label=False,
        no_instance=True, preprocess_mode="resize_and_crop", load_size=286, crop_size=256),
    # CPU-sized for tests and the demo: the embedded synthetic dataset at 64x64. No perceptual term
    # (lambda_vgg=0): at this budget it measured no better (docs/benchmarks.md, quality benchmark) and
    # needs no weight file; `--set lambda_vgg=10` turns the LPIPS-AlexNet term back on (fetched weights).
    "tiny": SPADEConfig(
        name="tiny", dataset_mode="synthetic", label_nc=8, contain_dontcare_label=False,
        no_instance=True, preprocess_mode="resize_and_crop", load_size=72, crop_size=64,
        ngf=16, ndf=16, spade_nhidden=32, num_D=2, n_layers_D=3, batchSize=4,
        perceptual_backbone="alexnet", lambda_vgg=0.0),
}


def get_preset(name: str) -> SPADEConfig:
    if name not in PRESETS:
        raise SpadeError(f"unknown preset '{name}'; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def load_config(path: str) -> SPADEConfig:
    """Read a `config.json` written by `spade convert` or `spade train`."""
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except FileNotFoundError:
        raise SpadeError(f"{path}: config file not found") from None
    except json.JSONDecodeError as e:
        raise SpadeError(f"{path}: not valid JSON ({e})") from None
    values = values.get("config", values)  # training writes {"config": ..., "versions": ...}
    return SPADEConfig.from_dict(values, source=path)
