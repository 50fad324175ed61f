"""Client for a spade-tf generator served by TensorFlow Serving (REST or gRPC).

    # REST (port 8501), label map → photo
    python scripts/serving_client.py --labels street.png --out photo.png \\
        --rest http://localhost:8501 --model-name spade
    # gRPC (port 8500), VAE model with a seed
    python scripts/serving_client.py --labels street.png --out photo.png \\
        --grpc localhost:8500 --model-name spade --seed 3
    # print the REST request body instead of sending it
    python scripts/serving_client.py --labels street.png --rest http://localhost:8501 --dry-run

The label PNG must already be at the model size and hold the model's class ids (255 = don't care
for models trained with it); the server checks both and answers 400 / INVALID_ARGUMENT otherwise.
gRPC needs `pip install tensorflow-serving-api` (same version as tensorflow); REST needs nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

import numpy as np
from PIL import Image


def rest_request(label_map, signature="serving_default", seed=None, z=None, instance_map=None) -> dict:
    """JSON body for `POST /v1/models/NAME:predict` (columnar "inputs" format)."""
    inputs = {"label_map": np.asarray(label_map, np.int32).tolist()}
    if seed is not None:
        inputs["seed"] = np.asarray(seed, np.int64).tolist()
    if z is not None:
        inputs["z"] = np.asarray(z, np.float32).tolist()
    if instance_map is not None:
        inputs["instance_map"] = np.asarray(instance_map, np.int32).tolist()
    return {"signature_name": signature, "inputs": inputs}


def predict_rest(url: str, model_name: str, body: dict, version: int | None = None) -> np.ndarray:
    """→ uint8 [B, H, W, 3]. Raises RuntimeError with the server's message on 4xx/5xx."""
    path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version is not None else "") + ":predict"
    request = urllib.request.Request(url.rstrip("/") + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as response:
            outputs = json.load(response)["outputs"]
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"server said {e.code}: {e.read().decode(errors='replace')}") from None
    image = outputs["image"] if isinstance(outputs, dict) else outputs
    return np.asarray(image, np.uint8)


def grpc_request(model_name: str, label_map, signature="serving_default", seed=None, z=None,
                 instance_map=None, version: int | None = None):
    """A tensorflow_serving PredictRequest."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["label_map"].CopyFrom(tf.make_tensor_proto(np.asarray(label_map, np.int32)))
    if seed is not None:
        request.inputs["seed"].CopyFrom(tf.make_tensor_proto(np.asarray(seed, np.int64)))
    if z is not None:
        request.inputs["z"].CopyFrom(tf.make_tensor_proto(np.asarray(z, np.float32)))
    if instance_map is not None:
        request.inputs["instance_map"].CopyFrom(tf.make_tensor_proto(np.asarray(instance_map, np.int32)))
    return request


def predict_grpc(target: str, request, timeout: float = 60.0) -> np.ndarray:
    """→ uint8 [B, H, W, 3]. Raises grpc.RpcError (INVALID_ARGUMENT carries the server's message)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 256 << 20)]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout)
    return tf.make_ndarray(response.outputs["image"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", required=True, help="class-id PNG at the model size")
    p.add_argument("--instances", default=None, help="instance-id PNG (models with instance edges)")
    p.add_argument("--out", default="photo.png")
    p.add_argument("--model-name", default="spade")
    p.add_argument("--version", type=int, default=None)
    p.add_argument("--seed", type=int, default=None, help="VAE models: z seed (serving_default)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--rest", metavar="URL", help="e.g. http://localhost:8501")
    target.add_argument("--grpc", metavar="HOST:PORT", help="e.g. localhost:8500")
    p.add_argument("--dry-run", action="store_true", help="print the request instead of sending it")
    args = p.parse_args(argv)

    label_map = np.asarray(Image.open(args.labels), np.int32)[None]
    instance_map = None if args.instances is None else np.asarray(Image.open(args.instances), np.int32)[None]
    seed = None if args.seed is None else [args.seed]
    if args.rest:
        body = rest_request(label_map, seed=seed, instance_map=instance_map)
        if args.dry_run:
            print(json.dumps(body)[:2000])
            return 0
        image = predict_rest(args.rest, args.model_name, body, args.version)
    else:
        request = grpc_request(args.model_name, label_map, seed=seed, instance_map=instance_map,
                               version=args.version)
        if args.dry_run:
            print(str(request)[:2000])
            return 0
        image = predict_grpc(args.grpc, request)
    Image.fromarray(image[0]).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
