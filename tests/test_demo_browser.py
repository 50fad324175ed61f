"""End to end: the demo page in real headless Chromium (Debian's `chromium`, driven by Playwright).

Starts uvicorn on a free loopback port in a background thread, paints two strokes of different
classes, waits for the photo and checks it changed where the strokes are and equals what the API
returns for the page's own label PNG.

Also the README screenshot tool: `SPADE_DEMO_MODEL=demo_out/train
SPADE_DEMO_SCREENSHOT=docs/demo_screenshot.png pytest tests/test_demo_browser.py` runs the same
test on that model and saves the page.
"""

import base64
import io
import json
import os
import random
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
SIZE = 64

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) to run the "
                "browser test", allow_module_level=True)
pytest.importorskip("fastapi", reason="the demo extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the demo extra (uvicorn) is not installed")
playwright = pytest.importorskip("playwright.sync_api", reason="the demo extra (playwright) is not installed")


def make_model_dir(path):
    """A random-weight tiny model folder laid out like `spade train` output.

    Instance norm and a larger init keep random outputs off the tanh rails (with batch norm's
    initial statistics every pixel saturates and no stroke could change the photo).
    """
    import keras

    from spade_tf.config import get_preset
    from spade_tf.models import build_networks

    path.mkdir(parents=True, exist_ok=True)
    states = random.getstate(), np.random.get_state()
    keras.utils.set_random_seed(0)  # some random inits change the photo almost everywhere
    cfg = get_preset("tiny").replace(crop_size=SIZE, ngf=4, spade_nhidden=8,
                                     norm_G="spectralspadeinstance3x3", init_variance=0.3)
    g, _, _ = build_networks(cfg)
    random.setstate(states[0])  # leave other tests' Python / NumPy randomness alone
    np.random.set_state(states[1])
    g.save(path / "generator.keras")
    (path / "config.json").write_text(json.dumps({"config": cfg.to_dict()}))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    from spade_tf.demo.backend import DemoModel
    from spade_tf.demo.server import create_app

    model = os.environ.get("SPADE_DEMO_MODEL") or make_model_dir(tmp_path_factory.mktemp("model") / "m")
    app = create_app(DemoModel.load(model), workers=2, queue=4)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def page(server):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 760})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=30000)
        yield page
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def wait_synced(page):
    page.wait_for_function("window.spadeDemo.isSynced()", timeout=30000)


def blob_png(page, expression) -> np.ndarray:
    """Decode a PNG Blob the page holds (`expression` evaluates to a Promise<Blob> or a Blob)."""
    data = page.evaluate(f"""async () => {{
        const bytes = new Uint8Array(await (await ({expression})).arrayBuffer());
        let s = ""; for (const b of bytes) s += String.fromCharCode(b); return btoa(s); }}""")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def stroke(page, class_id, y_frac, x0_frac, x1_frac):
    page.click(f"#palette button[data-class-id='{class_id}']")
    box = page.locator("#label-canvas").bounding_box()
    y = box["y"] + y_frac * box["height"]
    page.mouse.move(box["x"] + x0_frac * box["width"], y)
    page.mouse.down()
    page.mouse.move(box["x"] + x1_frac * box["width"], y, steps=12)
    page.mouse.up()


def test_paint_two_strokes_and_see_the_photo_change(page, server):
    import httpx

    # blank canvas of class 0 (selected at start), thin brush
    page.select_option("#start", "blank")
    page.click("#palette button[data-class-id='0']")
    page.click("#load-start")
    page.fill("#brush-size", "6")
    wait_synced(page)
    h, w = page.evaluate("[window.spadeDemo.state.H, window.spadeDemo.state.W]")
    before = blob_png(page, "window.spadeDemo.state.resultBlob")
    assert before.shape == (h, w, 3)

    stroke(page, 2, 0.25, 0.15, 0.85)  # grass across the upper part
    stroke(page, 7, 0.75, 0.15, 0.85)  # snow across the lower part
    wait_synced(page)
    label = blob_png(page, "window.spadeDemo.labelPng()")
    assert label.shape == (h, w)
    assert set(np.unique(label)) == {0, 2, 7}
    row1, row2 = round(0.25 * h), round(0.75 * h)
    cols = slice(round(0.25 * w), round(0.75 * w))
    assert (label[row1, cols] == 2).all() and (label[row2, cols] == 7).all()
    assert (label[h // 2] == 0).all()  # untouched between the strokes

    after = blob_png(page, "window.spadeDemo.state.resultBlob")
    diff = np.abs(after.astype(int) - before.astype(int)).sum(-1)
    painted = label != 0
    print(f"mean |change| where painted {diff[painted].mean():.1f}, elsewhere {diff[~painted].mean():.1f}")
    assert diff[painted].mean() > 3, "the photo did not change where the strokes are"
    assert diff[painted].mean() > 1.2 * diff[~painted].mean(), "the change is not where the strokes are"
    # the photo shown is exactly what the API gives for the page's label map
    files = {"label": ("l.png", _png(label), "image/png")}
    api = httpx.post(server + "/api/synthesize", files=files, timeout=30)
    assert api.status_code == 200
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(api.content))), after)
    shown = page.evaluate("""() => { const img = document.getElementById('result');
        return [img.naturalWidth, img.naturalHeight]; }""")
    assert shown == [w, h]
    assert "ms" in page.inner_text("#status")

    # undo removes the second stroke, redo brings it back
    page.click("#undo")
    assert 7 not in blob_png(page, "window.spadeDemo.labelPng()")
    page.click("#redo")
    assert np.array_equal(blob_png(page, "window.spadeDemo.labelPng()"), label)
    wait_synced(page)

    if os.environ.get("SPADE_DEMO_SCREENSHOT"):
        page.select_option("#start", "0")
        page.click("#load-start")
        page.fill("#brush-size", str(max(2, w // 8)))
        stroke(page, 1, 0.85, 0.1, 0.6)  # a lake in the foreground
        wait_synced(page)
        page.screenshot(path=os.environ["SPADE_DEMO_SCREENSHOT"])


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
