"""Paint-a-scene web demo (`spade demo`): FastAPI app in `server`, model side in `backend`,
the page in `static/` (plain HTML/JS/CSS, no build step).

Imports nothing heavy here: `spade_tf.demo.server` needs the `demo` extra (fastapi, uvicorn,
python-multipart), `spade_tf.demo.backend` needs TensorFlow.
"""
