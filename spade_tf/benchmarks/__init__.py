"""Benchmarks (not used by training or inference): `speed` (generator and training step, ours next to
the official code, whose driver is `official`), `quality` (FD/KID/mIoU/LPIPS against steps), `export`
(latency and size per deployment format), `demo` (the web demo's request latency)."""
