"""FastAPI app of the web demo: the page, and a JSON/PNG API a script can call too.

    GET  /                     the painting page (static/)
    GET  /api/info             model name, input size, use_vae, classes [{id, value, name, color}]
    GET  /api/examples/{i}     one starting label map: {name, width, height, ids: base64 uint16 LE}
    POST /api/synthesize       label map PNG (+ seed, + style image) → PNG photo

`POST /api/synthesize` takes multipart form fields `label` (PNG of class ids, single channel),
`seed` (int, optional, default 0) and `style` (image file, VAE models with an encoder), or a raw
`image/png` body with `?seed=`. A label map of another size is resized to the model size with
nearest-neighbour (header `X-Label-Resized: WxH->WxH`). Every bad input gets a 4xx JSON body
`{"error": code, "detail": message}`; more concurrent requests than `workers + queue` get 503 with
`Retry-After`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool

from spade_tf.data.images import from_uint8

STATIC_DIR = Path(__file__).parent / "static"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ID_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L", "1")
MAX_SEED = 2**31 - 1
log = logging.getLogger("spade_tf.demo")


class DemoError(Exception):
    """A client error, answered as `{"error": code, "detail": message, **extra}`."""

    def __init__(self, status: int, code: str, detail: str, headers: dict | None = None, **extra):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers, self.extra = status, code, detail, headers, extra

    def response(self) -> JSONResponse:
        body = {"error": self.code, "detail": self.detail, **self.extra}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _too_large(limit: int) -> DemoError:
    return DemoError(413, "too_large", f"request body over the {limit} byte limit (start the demo with a "
                     "larger --max-upload-mb to allow bigger uploads)", limit_bytes=limit)


class BodyLimit:
    """ASGI middleware: at most `limit` body bytes per request (Content-Length checked up front,
    chunked bodies counted as they arrive)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _too_large(self.limit).response()(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _too_large(self.limit)
            return message

        await self.app(scope, limited, send)


class Gate:
    """Admission control: `workers` running + `queue` waiting; the rest are turned away (503).

    Used from the event loop thread only, so a plain counter is enough.
    """

    def __init__(self, workers: int, queue: int):
        self.workers, self.capacity, self.active = workers, workers + queue, 0
        self.mean_s = 0.2  # running mean of inference time, for Retry-After

    def enter(self) -> None:
        if self.active >= self.capacity:
            wait = max(1, math.ceil(self.mean_s * self.active / self.workers))
            queued = self.capacity - self.workers
            raise DemoError(503, "busy", f"all {self.workers} workers busy and {queued} "
                            f"requests queued; retry in {wait} s", headers={"Retry-After": str(wait)},
                            retry_after_s=wait)
        self.active += 1

    def leave(self, seconds: float | None) -> None:
        self.active -= 1
        if seconds is not None:
            self.mean_s = 0.8 * self.mean_s + 0.2 * seconds


# ---- input decoding -------------------------------------------------------------------------
def _kind(data: bytes) -> str:
    for magic, name in ((PNG_MAGIC, "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
                        (b"RIFF", "RIFF/WebP"), (b"{", "JSON"), (b"<", "HTML/XML")):
        if data.startswith(magic):
            return name
    return "unknown binary" if data else "empty"


def _open(data: bytes, what: str, max_side: int) -> Image.Image:
    """Bytes → loaded PIL image; 400 for truncated/corrupt files, 413 for huge dimensions."""
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise DemoError(413, "too_many_pixels", f"{what}: image dimensions are far too large") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure is the client's file
        raise DemoError(400, "bad_image", f"{what}: cannot read this image ({e})") from None
    w, h = image.size
    if max(w, h) > max_side:
        raise DemoError(413, "too_many_pixels", f"{what}: {w}x{h} pixels; the limit is {max_side} per side",
                        limit_side=max_side)
    try:
        image.load()
    except Exception as e:  # noqa: BLE001
        raise DemoError(400, "bad_image", f"{what}: truncated or corrupt {_kind(data)} file ({e})") from None
    return image


def decode_label(data: bytes, demo, max_side: int) -> tuple[np.ndarray, str | None]:
    """PNG bytes → (int32 [H, W] one-hot ids at the model size, resize note or None)."""
    if not data.startswith(PNG_MAGIC):
        raise DemoError(415, "not_png", f"label: expected a PNG of class ids, got {_kind(data)} data")
    image = _open(data, "label", max_side)
    if image.mode not in ID_MODES:
        raise DemoError(422, "not_ids", f"label: a label map is a single-channel PNG whose pixel values are "
                        f"class ids (mode L, P or I); got mode '{image.mode}'. Colour-coded maps are not "
                        "accepted: convert colours to ids first.")
    from spade_tf.data import labels

    ids = np.asarray(image).astype(np.int64)
    cfg = demo.config
    found = labels.invalid_ids(ids, cfg)  # the rule every path uses, and its message
    if found is not None:
        raise DemoError(422, "unknown_class_ids", labels.message("label", *found, cfg),
                        unknown_ids=found[0][:100].tolist())
    ids = labels.to_channels(ids, cfg)
    h, w = cfg.image_size
    note = None
    if ids.shape != (h, w):
        note = f"{ids.shape[1]}x{ids.shape[0]}->{w}x{h}"
        resized = Image.fromarray(ids.astype(np.int32), mode="I").resize((w, h), Image.NEAREST)
        ids = np.asarray(resized)
    return ids.astype(np.int32), note


def decode_style(data: bytes, demo, max_side: int) -> np.ndarray:
    """Image bytes (PNG/JPEG/...) → float32 [H, W, 3] in [-1, 1] at the model size (bicubic)."""
    cfg = demo.config
    if not cfg.use_vae:
        raise DemoError(422, "no_style", "style: this model has no style input (use_vae=False); "
                        "send only a label map")
    if not demo.has_encoder:
        raise DemoError(422, "no_encoder", "style: this VAE model has no encoder (encoder.keras) next to "
                        "generator.keras, so it cannot take its style from an image; use a seed")
    if _kind(data) not in ("PNG", "JPEG", "GIF", "BMP", "RIFF/WebP"):
        raise DemoError(415, "not_image", f"style: expected a PNG or JPEG image, got {_kind(data)} data")
    image = _open(data, "style", max_side).convert("RGB")
    h, w = cfg.image_size
    if image.size != (w, h):
        image = image.resize((w, h), Image.BICUBIC)
    return from_uint8(np.asarray(image, np.float32))


def parse_seed(text) -> int:
    if text is None or str(text).strip() == "":
        return 0
    try:
        seed = int(str(text).strip())
    except ValueError:
        raise DemoError(422, "bad_seed", f"seed: expected an integer, got {str(text)[:40]!r}") from None
    if not 0 <= seed <= MAX_SEED:
        raise DemoError(422, "bad_seed", f"seed: must be in [0, {MAX_SEED}], got {seed}")
    return seed


def encode_png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


# ---- app --------------------------------------------------------------------------------------
def create_app(demo, *, workers: int = 1, queue: int = 4, max_upload_bytes: int = 8 << 20,
               max_side: int = 4096, before_inference: Callable[[], None] | None = None,
               warm_up: bool = True) -> FastAPI:
    """The demo app around a `DemoModel` (or any object with its attributes).

    `workers` threads run inference; `queue` more requests may wait; beyond that 503.
    `before_inference` runs in the worker thread before each model call (a test hook: make the
    model slow to exercise the queue).
    """
    if workers < 1 or queue < 0:
        raise ValueError("workers must be >= 1 and queue >= 0")
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spade-demo")
    gate = Gate(workers, queue)
    if warm_up:
        demo.warm_up()

    @asynccontextmanager
    async def lifespan(_app):
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="spade-tf demo", lifespan=lifespan, docs_url="/api/docs", redoc_url=None)
    app.state.demo, app.state.gate, app.state.pool = demo, gate, pool
    app.add_middleware(BodyLimit, limit=max_upload_bytes)

    @app.exception_handler(DemoError)
    async def _demo_error(_request, exc: DemoError):
        return exc.response()

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/info")
    async def info():
        cfg = demo.config
        h, w = cfg.image_size
        return {
            "model": demo.name, "width": w, "height": h, "use_vae": cfg.use_vae,
            "has_encoder": demo.has_encoder, "label_nc": cfg.label_nc,
            "dont_care_id": cfg.label_nc if cfg.contain_dontcare_label else None,
            "instance_edges": cfg.use_instance_edges,
            "classes": [{"id": c.id, "value": c.value, "name": c.name, "color": list(c.color)}
                        for c in demo.classes],
            "examples": [name for name, _ in demo.examples],
            "workers": gate.workers, "queue": gate.capacity - gate.workers,
            "max_upload_bytes": max_upload_bytes, "max_side": max_side, "wrong_size": "resize_nearest",
        }

    @app.get("/api/examples/{index}")
    async def example(index: int):
        if not 0 <= index < len(demo.examples):
            raise DemoError(404, "no_example", f"example {index}: there are {len(demo.examples)} examples")
        name, ids = demo.examples[index]
        data = base64.b64encode(np.ascontiguousarray(ids, "<u2").tobytes()).decode("ascii")
        return {"name": name, "width": int(ids.shape[1]), "height": int(ids.shape[0]), "ids": data}

    @app.post("/api/synthesize", responses={200: {"content": {"image/png": {}}}})
    async def synthesize(request: Request):
        label, style, seed = await _read_request(request)
        # decoding in Starlette's thread pool keeps the event loop free while a big PNG inflates
        ids, note = await run_in_threadpool(decode_label, label, demo, max_side)
        style_arr = None
        if style is not None:
            style_arr = await run_in_threadpool(decode_style, style, demo, max_side)
        gate.enter()
        queued_at = time.perf_counter()
        timing = {}

        def job():
            timing["start"] = time.perf_counter()
            if before_inference is not None:
                before_inference()
            out = demo.synthesize(ids, seed=seed, style=style_arr)
            timing["end"] = time.perf_counter()
            return encode_png(out)

        loop = asyncio.get_running_loop()

        # The slot is freed when the job ends (or is cancelled before it starts), not when the
        # request task is cancelled because the client went away while the model still runs.
        def done(_future):
            seconds = timing["end"] - timing["start"] if "end" in timing else None
            try:
                loop.call_soon_threadsafe(gate.leave, seconds)
            except RuntimeError:  # event loop already closed (server shutting down)
                pass

        future = pool.submit(job)
        future.add_done_callback(done)  # before wrap_future's callback: the gate is updated first
        try:
            body = await asyncio.wrap_future(future)
        except DemoError:
            raise
        except Exception as e:  # noqa: BLE001 - report, keep serving
            log.exception("synthesis failed")
            return JSONResponse({"error": "synthesis_failed", "detail": f"{type(e).__name__}: {e}"},
                                status_code=500)
        headers = {"X-Inference-Ms": f"{1000 * (timing['end'] - timing['start']):.1f}",
                   "X-Queue-Ms": f"{1000 * (timing['start'] - queued_at):.1f}", "X-Seed": str(seed),
                   "Cache-Control": "no-store"}
        if note:
            headers["X-Label-Resized"] = note
        return Response(body, media_type="image/png", headers=headers)

    return app


async def _read_request(request: Request) -> tuple[bytes, bytes | None, int]:
    """(label bytes, style bytes or None, seed) from a multipart form or a raw image/png body."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "image/png" or ctype == "application/octet-stream":
        return await request.body(), None, parse_seed(request.query_params.get("seed"))
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise DemoError(415, "bad_content_type", "send multipart/form-data (fields label, seed, style) or "
                        f"an image/png body; got content type '{ctype or 'none'}'")
    try:
        form = await request.form(max_files=2, max_fields=4)
    except DemoError:
        raise
    except Exception as e:  # noqa: BLE001 - malformed multipart
        why = getattr(e, "detail", e)
        raise DemoError(400, "bad_form", f"cannot parse the multipart form ({why})") from None
    unknown = sorted(set(form.keys()) - {"label", "seed", "style"})
    if unknown:
        raise DemoError(422, "unknown_fields", f"unknown form fields {unknown}; expected label, seed, style")
    label = form.get("label")
    if label is None or isinstance(label, str):
        raise DemoError(422, "no_label", "form field 'label' must be a file upload (the label map PNG)")
    style = form.get("style")
    if isinstance(style, str):
        raise DemoError(422, "bad_style", "form field 'style' must be a file upload (an image)")
    label_bytes = await label.read()
    style_bytes = await style.read() if style is not None else None
    return label_bytes, style_bytes, parse_seed(form.get("seed"))


def run_server(app: FastAPI, host: str, port: int) -> None:
    """Serve until interrupted (uvicorn, one process; inference threads live in the app's pool)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=3)
