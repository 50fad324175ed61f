"""Request latency of `spade demo` over loopback: p50 / p95 under 1, 4, 16 concurrent clients.

    spade benchmark demo --model demo_out/train --runtime keras --clients 1 4 16 --requests 8

Starts `spade demo` as a separate process (as a user would run it), waits for it, then each of C
client threads sends a fixed number of requests back to back (a bounded loop: no open-loop load
generator) and the wall time of every request is recorded. Logs one Markdown table row per C.
`make_random=PRESET` (`--make-random PRESET`) first writes a random-weight model of that preset
(latency does not depend on the weights) to the model folder.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def make_random_model(preset: str, out: Path, overrides: list[str]) -> None:
    from spade_tf.config import get_preset
    from spade_tf.models import build_networks

    cfg = get_preset(preset).with_overrides(overrides)
    g, _, e = build_networks(cfg)
    out.mkdir(parents=True, exist_ok=True)
    g.save(out / "generator.keras")
    if e is not None:
        e.save(out / "encoder.keras")
    (out / "config.json").write_text(json.dumps({"config": cfg.to_dict()}))


def label_png(info: dict, label: str | None) -> bytes:
    """The request body: a given label PNG, or blocky random ids of the model's classes."""
    from PIL import Image

    if label:
        return Path(label).read_bytes()
    from spade_tf.data.synthetic import blocky_ids

    ids = blocky_ids(1, info["height"], info["width"], [c["value"] for c in info["classes"]])[0]
    ids = ids.astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(ids).save(buf, format="PNG")
    return buf.getvalue()


def run_clients(url: str, body: bytes, clients: int, requests: int) -> dict:
    import httpx

    latencies, model_ms, busy = [], [], [0]
    lock = threading.Lock()

    def client():
        with httpx.Client(timeout=300) as c:
            for i in range(requests):
                t0 = time.perf_counter()
                r = c.post(url, files={"label": ("l.png", body, "image/png")}, data={"seed": str(i)})
                dt = time.perf_counter() - t0
                with lock:
                    if r.status_code == 503:
                        busy[0] += 1
                    else:
                        r.raise_for_status()
                        latencies.append(dt)
                        model_ms.append(float(r.headers["X-Inference-Ms"]))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {"clients": clients, "n": len(ms), "p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95),
            "model_ms": float(np.median(model_ms)), "rps": len(ms) / wall, "busy": busy[0]}


def run_demo_benchmark(model, runtime: str = "keras", clients=(1, 4, 16), requests: int = 8, workers: int = 1,
                       queue: int = 16, label: str | None = None, make_random: str | None = None,
                       overrides=(), log=print) -> list[dict]:
    """Start `spade demo --model MODEL` on a free loopback port, then for each C in `clients` send
    `requests` requests per client; logs a Markdown table row per C and returns the rows.
    `make_random=PRESET` first writes a random-weight model of PRESET + `overrides` to `model`."""
    from spade_tf.errors import SpadeError

    model = Path(model)
    if make_random:
        make_random_model(make_random, model, list(overrides))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    cmd = [sys.executable, "-m", "spade_tf.cli", "demo", "--model", str(model), "--port", str(port),
           "--workers", str(workers), "--queue", str(queue), "--runtime", runtime]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143)) if in_main else None  # run `finally`
    results = []
    try:
        import httpx

        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        while True:
            if server.poll() is not None:
                raise SpadeError(f"spade demo exited: {server.stderr.read().decode()[-2000:]}")
            try:
                info = httpx.get(base + "/api/info", timeout=2).json()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SpadeError("spade demo did not start in 600 s") from None
                time.sleep(0.5)
        body = label_png(info, label)
        run_clients(base + "/api/synthesize", body, 1, 3)  # warm-up
        log(f"model {model} ({info['width']}x{info['height']}), runtime {runtime}, "
            f"workers {workers}, queue {queue}, {requests} requests per client")
        log("| clients | requests | p50 ms | p95 ms | model ms (median) | req/s | 503s |")
        log("|---:|---:|---:|---:|---:|---:|---:|")
        for c in clients:
            r = run_clients(base + "/api/synthesize", body, c, requests)
            results.append(r)
            log(f"| {c} | {r['n']} | {r['p50']:.0f} | {r['p95']:.0f} | {r['model_ms']:.0f} "
                f"| {r['rps']:.1f} | {r['busy']} |")
    finally:
        server.terminate()
        server.wait(30)
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    return results
