from setuptools import find_namespace_packages, setup

setup(
    name="spade-tf",
    version="0.1.0",
    description="SPADE / GauGAN semantic image synthesis in TensorFlow 2 and Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_namespace_packages(include=["spade_tf", "spade_tf.*"], exclude=["*.__pycache__"]),
    include_package_data=True,
    package_data={"spade_tf.demo.static": ["*.html", "*.js", "*.css"]},
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.10,<4",
        "numpy>=1.26",
        "pillow>=10",
        "scipy>=1.11",
        "tqdm>=4.66",
        "tensorboard",
    ],
    extras_require={
        "export": ["ai-edge-litert", "tf2onnx", "onnxruntime", "onnx"],
        "serving": ["tensorflow-serving-api==2.21.*"],
        "tfds": ["tensorflow-datasets", "importlib_resources"],
        "demo": ["fastapi", "uvicorn", "python-multipart", "playwright", "httpx"],
        "dev": ["pytest>=8", "ruff>=0.5", "pytest-timeout", "matplotlib", "build"],
        # the networks, converter and inference on Keras's JAX and PyTorch backends (tests/test_backends.py).
        # torch pinned (the version the official fixtures were made with); for a CPU-only torch elsewhere,
        # pip's --extra-index-url https://download.pytorch.org/whl/cpu
        "backends": ["jax", "torch==2.13.0"],
    },
    entry_points={"console_scripts": ["spade=spade_tf.cli:main"]},
)
