"""Request latency of `spade demo` over loopback: p50 / p95 under 1, 4, 16 concurrent clients.

    python -m spade_tf.benchmarks.demo --model demo_out/train --runtime keras --clients 1 4 16 --requests 8

Starts `spade demo` as a separate process (as a user would run it), waits for it, then each of C
client threads sends a fixed number of requests back to back (a bounded loop: no open-loop load
generator) and the wall time of every request is recorded. Prints one Markdown table row per C.
`--make-random PRESET` first writes a random-weight model of that preset (latency does not depend
on the weights) to `--model`.
"""

from __future__ import annotations

import argparse
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
    h, w = info["height"], info["width"]
    values = [c["value"] for c in info["classes"]]
    rng = np.random.default_rng(0)
    coarse = rng.choice(values, (max(h // 8, 1), max(w // 8, 1)))
    ids = np.repeat(np.repeat(coarse, 8, 0), 8, 1)[:h, :w].astype(np.uint8)
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--make-random", metavar="PRESET",
                   help="first write a random-weight PRESET model to --model")
    p.add_argument("--set", action="append", default=[], help="config overrides for --make-random")
    p.add_argument("--runtime", default="keras", choices=("keras", "savedmodel", "tflite"))
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--requests", type=int, default=8, help="requests per client (default 8)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--queue", type=int, default=16)
    p.add_argument("--label", help="label PNG to send (default: blocky random ids)")
    args = p.parse_args(argv)

    model = Path(args.model)
    if args.make_random:
        make_random_model(args.make_random, model, args.set)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    cmd = [sys.executable, "-m", "spade_tf.cli", "demo", "--model", str(model), "--port", str(port),
           "--workers", str(args.workers), "--queue", str(args.queue), "--runtime", args.runtime]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the `finally` below: stop the server
    try:
        import httpx

        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        while True:
            if server.poll() is not None:
                raise SystemExit(f"spade demo exited: {server.stderr.read().decode()[-2000:]}")
            try:
                info = httpx.get(base + "/api/info", timeout=2).json()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit("spade demo did not start in 600 s") from None
                time.sleep(0.5)
        body = label_png(info, args.label)
        run_clients(base + "/api/synthesize", body, 1, 3)  # warm-up
        print(f"model {model} ({info['width']}x{info['height']}), runtime {args.runtime}, "
              f"workers {args.workers}, queue {args.queue}, {args.requests} requests per client")
        print("| clients | requests | p50 ms | p95 ms | model ms (median) | req/s | 503s |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for c in args.clients:
            r = run_clients(base + "/api/synthesize", body, c, args.requests)
            print(f"| {c} | {r['n']} | {r['p50']:.0f} | {r['p95']:.0f} | {r['model_ms']:.0f} "
                  f"| {r['rps']:.1f} | {r['busy']} |", flush=True)
    finally:
        server.terminate()
        server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
