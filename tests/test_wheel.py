"""The package as users install it: `python -m build` gives a wheel and an sdist with everything needed
at run time, and the wheel, installed into a fresh virtual environment outside the checkout, trains,
synthesizes and loads its generator with `import spade_tf` alone.

Slow (a wheel build and a short training run with its XLA compile): run by `make test-wheel` (which
`.ci/run` calls), or with SPADE_TEST_WHEEL=1; skipped in `make test`. To stay fast, the fresh
environment reuses the already-installed dependencies of the running interpreter through a `.pth`
line (its site-packages' own .pth files, such as the checkout's editable install, are not processed),
and the wheel is installed with --no-deps. The test checks that `spade_tf` comes from the wheel.
"""

import os
import site
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("SPADE_TEST_WHEEL") != "1",
                       reason="wheel install test: run `make test-wheel` (or set SPADE_TEST_WHEEL=1)"),
]
RUNTIME_FILES = ("spade_tf/demo/static/index.html", "spade_tf/demo/static/app.js",
                 "spade_tf/demo/static/style.css", "spade_tf/config.py", "spade_tf/weights.py")


def run(cmd, cwd, env=None, timeout=900):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                                  f"{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    pytest.importorskip("build", reason="the `build` package (dev extra) is needed to build the wheel")
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, REPO], cwd=REPO)
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    return wheels[0], sdists[0]


def test_wheel_and_sdist_carry_the_runtime_files(dist):
    wheel, sdist = dist
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in RUNTIME_FILES:
        assert f in names, f"{f} missing from the wheel"
    assert any(n.endswith("entry_points.txt") for n in names)
    with tarfile.open(sdist) as tf:
        snames = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for f in RUNTIME_FILES + ("setup.py", "README.md"):
        assert f in snames, f"{f} missing from the sdist"


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory):
    """A fresh venv (outside the checkout) with the wheel installed and the dependencies borrowed."""
    root = tmp_path_factory.mktemp("wheel_env")
    env_dir = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", env_dir], cwd=root)
    py = env_dir / "bin" / "python"
    purelib = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       cwd=root).stdout.strip())
    borrowed = [p for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                            *site.getsitepackages()} if Path(p).is_dir()]
    (purelib / "zz_borrowed_deps.pth").write_text("\n".join(sorted(borrowed)) + "\n")
    run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", dist[0]],
        cwd=root)
    return env_dir, root


def test_installed_wheel_trains_synthesizes_and_loads(venv, tmp_path):
    env_dir, root = venv
    bin_dir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", SPADE_OFFLINE="1")
    work = tmp_path / "work"  # outside the checkout: nothing can be imported from the working tree
    work.mkdir()
    where = run([bin_dir / "python", "-c", "import spade_tf; print(spade_tf.__file__)"], work, env).stdout
    assert Path(where.strip()).resolve().is_relative_to(env_dir.resolve()), where
    assert not Path(where.strip()).resolve().is_relative_to(REPO)

    helptext = run([bin_dir / "spade", "--help"], work, env).stdout
    assert "train" in helptext and "synthesize" in helptext

    out = work / "run"
    proc = run([bin_dir / "spade", "train", "--preset", "tiny", "--steps", "2", "--out", out], work, env)
    assert (out / "generator.keras").is_file(), proc.stdout + proc.stderr
    # quiet: no TensorFlow C++ log lines on a default run
    for noise in ("cuInit", "oneDNN", "cpu_feature_guard", "remapper", "I0000", "E0000", "W0000"):
        assert noise not in proc.stderr, f"TensorFlow log line on stderr: {noise}\n{proc.stderr[-2000:]}"

    from PIL import Image

    labels = work / "labels"
    labels.mkdir()
    ids = (np.arange(64)[:, None] // 8 + np.arange(64)[None, :] // 16) % 8
    Image.fromarray(ids.astype(np.uint8)).save(labels / "map.png")
    run([bin_dir / "spade", "synthesize", "--model", out, "--labels", labels, "--out", work / "photos",
         "--no-jit-compile"], work, env)
    photo = np.asarray(Image.open(next((work / "photos").glob("*.png"))))
    assert photo.shape == (64, 64, 3)

    code = ("import keras, spade_tf, sys; m = keras.saving.load_model(sys.argv[1]); "
            "print(type(m).__module__, m.output.shape if hasattr(m, 'output') else '')")
    loaded = run([bin_dir / "python", "-c", code, out / "generator.keras"], work, env).stdout
    assert loaded.startswith("spade_tf."), loaded
