"""HTTP API of the web demo (`spade demo`), server in-process, on tiny random-weight models."""

import asyncio
import io
import json
import threading

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the demo extra (fastapi) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (needed by fastapi.testclient) is not installed")

from fastapi.testclient import TestClient  # noqa: E402

from spade_tf.config import get_preset  # noqa: E402
from spade_tf.demo.backend import DemoModel, demo_classes, read_label_colors  # noqa: E402
from spade_tf.demo.server import create_app  # noqa: E402
from spade_tf.errors import SpadeError  # noqa: E402

SIZE = 32


def make_model_dir(path, use_vae=False, label_colors=None):
    """A random-weight tiny model folder laid out like `spade train` / `spade convert` output."""
    from spade_tf.models import build_networks

    path.mkdir(parents=True, exist_ok=True)
    cfg = get_preset("tiny").replace(crop_size=SIZE, ngf=4, spade_nhidden=8, use_vae=use_vae)
    g, _, e = build_networks(cfg)
    g.save(path / "generator.keras")
    if e is not None:
        e.save(path / "encoder.keras")
    (path / "config.json").write_text(json.dumps({"config": cfg.to_dict()}))
    if label_colors is not None:
        (path / "label_colors.json").write_text(json.dumps(label_colors))
    return path


def png(array, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def decode(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)))


def stripes(h=SIZE, w=SIZE) -> np.ndarray:
    ids = np.zeros((h, w), np.uint8)
    for k in range(8):
        ids[:, k * w // 8:] = k
    return ids


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return DemoModel.load(make_model_dir(tmp_path_factory.mktemp("model") / "m"))


@pytest.fixture(scope="module")
def client(demo):
    return TestClient(create_app(demo, workers=2, queue=2, max_upload_bytes=64 << 10, max_side=256))


def post(client, label: bytes, **fields):
    files = {"label": ("label.png", label, "image/png")}
    if "style" in fields:
        files["style"] = ("style.png", fields.pop("style"), "image/png")
    return client.post("/api/synthesize", files=files, data={k: str(v) for k, v in fields.items()})


def assert_error(r, status, code):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code and body["detail"], body
    return body


# ---- good requests ----------------------------------------------------------------------------
def test_info_lists_the_model_classes_and_size(client):
    info = client.get("/api/info").json()
    assert (info["width"], info["height"]) == (SIZE, SIZE)
    assert info["use_vae"] is False and info["wrong_size"] == "resize_nearest"
    assert [c["name"] for c in info["classes"]][:3] == ["sky", "water", "grass"]
    assert info["classes"][0]["color"] == [110, 170, 235] and len(info["classes"]) == 8
    assert len(info["examples"]) > 0  # synthetic-data model: generated starting maps


def test_synthesize_runs_the_model_on_the_posted_map(client, demo):
    ids = stripes()
    r = post(client, png(ids), seed=5)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert float(r.headers["X-Inference-Ms"]) >= 0
    image = decode(r.content)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    # same as the library's own inference path (spade_tf.inference) on the same map
    reference = demo.model.synthesize(ids.astype(np.int32))[0]
    assert np.abs(image.astype(int) - reference.astype(int)).max() <= 1
    other = decode(post(client, png(np.full((SIZE, SIZE), 3, np.uint8))).content)
    assert np.abs(other.astype(int) - image.astype(int)).mean() > 1  # the map matters


def test_raw_png_body_is_accepted(client):
    r = client.post("/api/synthesize?seed=1", content=png(stripes()), headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.headers["X-Seed"] == "1"


def test_wrong_size_is_resized_nearest(client):
    small = stripes(8, 8)  # every pixel becomes a 4x4 block
    r = post(client, png(small))
    assert r.status_code == 200 and r.headers["X-Label-Resized"] == "8x8->32x32"
    same = post(client, png(np.repeat(np.repeat(small, 4, 0), 4, 1)))
    assert "X-Label-Resized" not in same.headers
    assert np.array_equal(decode(r.content), decode(same.content))


def test_examples_are_valid_label_maps(client):
    ex = client.get("/api/examples/0").json()
    import base64

    ids = np.frombuffer(base64.b64decode(ex["ids"]), "<u2").reshape(ex["height"], ex["width"])
    assert ids.shape == (SIZE, SIZE) and ids.max() < 8 and len(np.unique(ids)) > 1
    assert_error(client.get("/api/examples/999"), 404, "no_example")


# ---- bad input --------------------------------------------------------------------------------
def test_unknown_class_ids_are_422_and_named(client):
    ids = stripes()
    ids[0, 0], ids[1, 1] = 9, 200
    body = assert_error(post(client, png(ids)), 422, "unknown_class_ids")
    assert body["unknown_ids"] == [9, 200]
    assert body["detail"].startswith("label: label ids [9 200] are not ids of this model")
    assert "it takes 0..7" in body["detail"]
    wide = np.full((SIZE, SIZE), 60000, np.uint16)  # 16-bit PNG: no silent wrap-around
    assert assert_error(post(client, png(wide)), 422, "unknown_class_ids")["unknown_ids"] == [60000]


def test_colour_png_is_rejected(client):
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    assert "single-channel" in assert_error(post(client, png(rgb)), 422, "not_ids")["detail"]


def test_non_png_uploads_are_415(client):
    buf = io.BytesIO()
    Image.fromarray(stripes()).save(buf, format="JPEG")
    assert "JPEG" in assert_error(post(client, buf.getvalue()), 415, "not_png")["detail"]
    assert_error(post(client, b"hello, world"), 415, "not_png")
    assert_error(post(client, b""), 415, "not_png")


def test_truncated_png_is_400(client):
    noisy = np.random.default_rng(0).integers(0, 8, (SIZE, SIZE), dtype=np.uint8)
    data = png(noisy)
    assert_error(post(client, data[: len(data) // 2]), 400, "bad_image")
    assert_error(post(client, data[:30]), 400, "bad_image")  # header only
    assert post(client, data).status_code == 200  # the whole file is fine


def test_oversized_uploads_are_413(client):
    big = np.random.default_rng(1).integers(0, 65535, (200, 200), dtype=np.uint16)  # > 64 KiB as PNG
    data = png(big)
    assert len(data) > 64 << 10
    assert_error(post(client, data), 413, "too_large")
    # a chunked body (no Content-Length) is counted as it arrives
    r = client.post("/api/synthesize", content=iter([data[i:i + 8192] for i in range(0, len(data), 8192)]),
                    headers={"content-type": "image/png"})
    assert_error(r, 413, "too_large")
    # few bytes, too many pixels (decompression bomb guard): limit 256 per side
    assert_error(post(client, png(np.zeros((1, 300), np.uint8))), 413, "too_many_pixels")


def test_form_mistakes_are_4xx(client):
    assert_error(post(client, png(stripes()), seed="abc"), 422, "bad_seed")
    assert_error(post(client, png(stripes()), seed=-1), 422, "bad_seed")
    assert_error(client.post("/api/synthesize", data={"seed": "1"}), 422, "no_label")
    assert_error(client.post("/api/synthesize", content=b"{}", headers={"content-type": "application/json"}),
                 415, "bad_content_type")
    assert_error(post(client, png(stripes()), colour="red"), 422, "unknown_fields")
    style = png(np.zeros((SIZE, SIZE, 3), np.uint8))
    assert_error(post(client, png(stripes()), style=style), 422, "no_style")  # not a VAE model
    broken = {"content-type": "multipart/form-data"}
    r = client.post("/api/synthesize", content=b"--x\r\nbroken", headers=broken)
    assert 400 <= r.status_code < 500
    assert post(client, png(stripes())).status_code == 200  # still serving


# ---- load -------------------------------------------------------------------------------------
def test_more_requests_than_pool_and_queue_get_503(demo):
    release, started = threading.Event(), threading.Semaphore(0)

    def slow():  # runs in the worker thread before each model call
        started.release()
        release.wait(30)

    app = create_app(demo, workers=1, queue=1, before_inference=slow, warm_up=False)
    label = png(stripes())

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as c:
            send = lambda: c.post("/api/synthesize", files={"label": ("l.png", label, "image/png")})  # noqa: E731
            first = asyncio.create_task(send())
            await asyncio.to_thread(started.acquire, True, 30)  # the worker is now busy
            second = asyncio.create_task(send())  # waits in the queue
            while app.state.gate.active < 2:
                await asyncio.sleep(0.01)
            rejected = await send()  # pool (1) + queue (1) full
            release.set()
            return rejected, await first, await second

    rejected, first, second = asyncio.run(scenario())
    body = assert_error(rejected, 503, "busy")
    assert int(rejected.headers["Retry-After"]) >= 1 and body["retry_after_s"] >= 1
    assert first.status_code == 200 and second.status_code == 200
    assert app.state.gate.active == 0


def test_a_failing_model_call_is_500_json_and_frees_its_slot(demo):
    calls = []

    def fail_once():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated model failure")

    app = create_app(demo, workers=1, queue=0, before_inference=fail_once, warm_up=False)
    client = TestClient(app, raise_server_exceptions=False)
    r = post(client, png(stripes()))
    assert r.status_code == 500 and "simulated model failure" in r.json()["detail"]
    assert app.state.gate.active == 0
    assert post(client, png(stripes())).status_code == 200  # queue 0, one worker: the slot came back


# ---- VAE models and palettes ----------------------------------------------------------------------
def test_vae_model_takes_seed_and_style_image(tmp_path):
    demo = DemoModel.load(make_model_dir(tmp_path / "vae", use_vae=True))
    client = TestClient(create_app(demo))
    assert client.get("/api/info").json()["has_encoder"] is True
    label = png(stripes())
    a, a2, b = (decode(post(client, label, seed=s).content) for s in (1, 1, 2))
    assert np.array_equal(a, a2) and np.abs(a.astype(int) - b.astype(int)).mean() > 0.5
    photo = np.random.default_rng(3).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    s1 = post(client, label, style=png(photo))
    assert s1.status_code == 200
    assert np.array_equal(decode(s1.content), decode(post(client, label, style=png(photo)).content))
    assert_error(post(client, label, style=b"GIF89a-not-really"), 400, "bad_image")
    assert_error(post(client, label, style=b"%PDF-1.4"), 415, "not_image")


def test_label_colors_json_overrides_the_palette(tmp_path):
    cfg = get_preset("tiny")
    (tmp_path / "label_colors.json").write_text(json.dumps(
        [{"id": 0, "name": "ocean", "color": [1, 2, 3]}, {"id": 2, "color": "#0a0b0c"}]))
    classes = demo_classes(cfg, tmp_path)
    assert (classes[0].name, classes[0].color) == ("ocean", (1, 2, 3))
    assert (classes[2].name, classes[2].color) == ("grass", (10, 11, 12))
    assert classes[1].name == "water"
    (tmp_path / "label_colors.json").write_text(json.dumps({"9": [1, 2, 3]}))
    with pytest.raises(SpadeError, match="class id 9 outside"):
        read_label_colors(tmp_path / "label_colors.json", cfg)


def test_starting_maps_from_a_labels_folder(tmp_path):
    from spade_tf.demo.backend import load_examples

    cfg = get_preset("tiny").replace(crop_size=SIZE)
    (tmp_path / "a.png").write_bytes(png(stripes()))
    (tmp_path / "b.png").write_bytes(png(stripes(8, 8)))  # resized nearest to 32x32
    examples = load_examples(cfg, tmp_path)
    assert [name for name, _ in examples] == ["a", "b"]
    assert all(ids.shape == (SIZE, SIZE) for _, ids in examples)
    assert np.array_equal(examples[1][1], np.repeat(np.repeat(stripes(8, 8), 4, 0), 4, 1))
    (tmp_path / "c.png").write_bytes(png(np.full((4, 4), 9, np.uint8)))
    with pytest.raises(SpadeError, match="c.png"):
        load_examples(cfg, tmp_path)


def test_dont_care_is_value_255(tmp_path):
    cfg = get_preset("ade20k")
    classes = demo_classes(cfg)
    assert len(classes) == 151 and classes[150].value == 255 and classes[149].value == 149


@pytest.mark.parametrize("runtime", ["savedmodel", "tflite"])
def test_exported_runtimes_give_the_keras_image(demo, runtime):
    if runtime == "tflite":
        pytest.importorskip("ai_edge_litert", reason="the export extra (ai-edge-litert) is not installed")
    exported = DemoModel(demo.model, demo.classes, [], runtime=runtime)
    ids = stripes().astype(np.int32)
    a, b = exported.synthesize(ids), demo.synthesize(ids)
    assert a.shape == b.shape == (SIZE, SIZE, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_cli_demo_parser_defaults_to_loopback():
    from spade_tf.cli import build_parser

    args = build_parser().parse_args(["demo", "--model", "m"])
    assert (args.host, args.port, args.workers, args.queue) == ("127.0.0.1", 8080, 1, 4)
