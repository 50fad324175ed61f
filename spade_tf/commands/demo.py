"""`spade demo`: a local web page to paint a label map and watch the photo appear."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  # the model `make demo` trains (tiny preset, synthetic landscapes)
  spade demo --model demo_out/train --labels demo_out/labels
  # an imported official model, starting from your own label maps
  spade demo --model converted/coco --labels my_labels/ --port 8090
  # let other machines on the network reach it (the default binds to this machine only)
  spade demo --model converted/ade --host 0.0.0.0

then open http://127.0.0.1:8080/ . The page's HTTP API works from scripts too:
  curl -s http://127.0.0.1:8080/api/info
  curl -s -F label=@map.png -F seed=7 http://127.0.0.1:8080/api/synthesize -o photo.png

Needs the demo extra: pip install 'spade-tf[demo]'.
"""


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo", help="paint-a-scene web demo on a local port",
        description="Serve a page where you paint a label map with the model's classes and see the "
                    "synthesized photo, plus a JSON/PNG API (GET /api/info, POST /api/synthesize).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help="model folder (generator.keras + config.json [+ encoder.keras, label_colors.json]) "
                        "or a generator .keras file")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default: 8080)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 for all)")
    p.add_argument("--workers", type=int, default=1, help="inference threads (default: 1)")
    p.add_argument("--queue", type=int, default=4,
                   help="requests that may wait for a worker; more get 503 + Retry-After (default: 4)")
    p.add_argument("--labels", default=None,
                   help="label PNG or folder of class-id PNGs offered as starting maps "
                        "(default: a few generated scenes for synthetic-data models)")
    p.add_argument("--runtime", choices=("keras", "savedmodel", "tflite"), default="keras",
                   help="what runs the generator: keras (compiled graph, default), savedmodel or tflite "
                        "(exported from MODEL at start, or read from --runtime-path)")
    p.add_argument("--runtime-path", default=None,
                   help="an existing export of MODEL for --runtime savedmodel/tflite (from `spade export`)")
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="request body limit (default: 8 MB)")
    return p


def run(args) -> int:
    from spade_tf.errors import SpadeError

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise SpadeError(f"the web demo needs the demo extra ({e.name} is missing): "
                         "pip install 'spade-tf[demo]'") from None
    if args.workers < 1 or args.queue < 0:
        raise SpadeError("--workers must be >= 1 and --queue >= 0")
    if not 0 < args.port < 65536:
        raise SpadeError(f"--port {args.port}: must be in 1..65535")
    _check_port(args.host, args.port)
    from spade_tf.demo.backend import DemoModel
    from spade_tf.demo.server import create_app, run_server

    if args.runtime_path and args.runtime == "keras":
        raise SpadeError("--runtime-path needs --runtime savedmodel or tflite")
    demo = DemoModel.load(args.model, labels=args.labels, runtime=args.runtime,
                          runtime_path=args.runtime_path)
    h, w = demo.config.image_size
    print(f"spade demo: model {args.model} ({w}x{h}, {len(demo.classes)} classes, "
          f"{len(demo.examples)} starting maps, runtime {args.runtime}); compiling…", flush=True)
    app = create_app(demo, workers=args.workers, queue=args.queue,
                     max_upload_bytes=int(args.max_upload_mb * (1 << 20)))
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"spade demo: open http://{shown}:{args.port}/  (Ctrl+C stops)", flush=True)
    run_server(app, args.host, args.port)
    return 0


def _check_port(host: str, port: int) -> None:
    """Fail before the (slow) model load when the address cannot be bound."""
    import socket

    from spade_tf.errors import SpadeError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise SpadeError(f"--host {host}: cannot resolve this address ({e})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            raise SpadeError(f"cannot listen on {host}:{port} ({e.strerror}); is another server using it? "
                             "Choose another --port") from None
