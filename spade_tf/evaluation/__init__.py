"""Evaluation: FID/KID (FID Inception or AlexNet features), LPIPS and diversity, segmentation accuracy.

Modules are imported on use (`from spade_tf.evaluation.lpips import LPIPS`) so that importing this
package stays cheap.
"""
