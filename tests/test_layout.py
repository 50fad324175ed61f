"""The package's layering (README, Layout): a module imports only from its own layer or below, also
inside functions. Lower → higher: base (config, errors, data, the .pth reader, replicas) → layers → models,
backbones, weights (the registry of published weights builds backbone files) → training, evaluation,
export, inference, convert, precision, cost → benchmarks, demo → commands, cli, and the package's
`__init__` (the facade that registers every Keras class)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "spade_tf"
LAYERS = [
    {"config", "errors", "data", "pth", "replicas"},
    {"layers"},
    {"models", "backbones", "weights"},
    {"training", "evaluation", "export", "inference", "convert", "precision", "cost"},
    {"benchmarks", "demo"},
    {"commands", "cli", "__main__", "__init__"},
]


def _layer(top: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if top in names)


def test_no_module_imports_a_higher_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        top = rel.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spade_tf"):
                parts = node.module.split(".")
                targets = [parts[1]] if len(parts) > 1 else [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1] for a in node.names
                           if a.name.startswith("spade_tf.") and len(a.name.split(".")) > 1]
            else:
                continue
            for target in targets:
                if _layer(target) > _layer(top):
                    upward.append(f"{rel}:{node.lineno} imports spade_tf.{target}")
    assert upward == []
