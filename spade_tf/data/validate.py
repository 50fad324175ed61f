"""Check every pair of a dataset (what `spade data validate` runs) and count classes.

Each file is opened with the same `decode.read_pair` the training pipeline uses, so a dataset that
validates cleanly cannot fail in training on the same checks. Reading is spread over threads
(Pillow releases the GIL while decoding).
"""

from __future__ import annotations

import collections
import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from spade_tf.data import decode, layouts

# Problem classes in the order a user should fix them.
PROBLEM_KINDS = ("missing_partner", "duplicate", "label_format", "unreadable", "size_mismatch", "label_value")


@dataclasses.dataclass
class Report:
    pairs: int = 0
    good: int = 0
    problems: list[layouts.Problem] = dataclasses.field(default_factory=list)
    histogram: np.ndarray | None = None  # pixels per label id (after don't-care mapping)
    sizes: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # (W, H) -> count

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_kind(self) -> dict[str, list[layouts.Problem]]:
        out: dict[str, list[layouts.Problem]] = {}
        for kind in PROBLEM_KINDS + tuple(sorted({p.kind for p in self.problems} - set(PROBLEM_KINDS))):
            found = [p for p in self.problems if p.kind == kind]
            if found:
                out[kind] = found
        return out

    def format_problems(self) -> str:
        lines = []
        for kind, found in self.by_kind().items():
            lines.append(f"{kind}: {len(found)} file(s)")
            lines += [f"  {p}" for p in found]
        return "\n".join(lines)


def check_pairs(pairs, config, workers: int = 8, progress=None, limit: int | None = None) -> Report:
    """Read and check each pair; collect problems (never raises for bad data)."""
    pairs = list(pairs)[:limit] if limit else list(pairs)
    report = Report(pairs=len(pairs), histogram=np.zeros(config.num_label_channels, np.int64))

    def one(pair):
        try:
            photo, label, _ = decode.read_pair(pair.image, pair.label, pair.instance, config)
        except decode.BadPair as e:
            return e, None, None
        return None, np.bincount(label.ravel(), minlength=config.num_label_channels), photo.shape[1::-1]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for err, counts, size in pool.map(one, pairs):
            if err is not None:
                report.problems.append(layouts.Problem(err.kind, err.path, err.reason))
            else:
                report.good += 1
                report.histogram += counts
                report.sizes[tuple(size)] += 1
            if progress is not None:
                progress.update(1)
    return report


def validate(config, data_dir, split: str = "train", workers: int = 8, progress=None,
             limit: int | None = None) -> Report:
    """Find the pairs of `split` in `data_dir` and check every one (missing partners included)."""
    pairs, problems = layouts.find_pairs(config, data_dir, split)
    report = check_pairs(pairs, config, workers, progress, limit)
    report.problems = problems + report.problems
    return report
