"""Spectral normalization (Miyato et al., 2018) as PyTorch's `torch.nn.utils.spectral_norm`.

The wrapped layer's kernel W stays the trainable variable. u and v are non-trainable state.
A training call runs one power iteration (u, v updated, gradients not taken through them) and
uses W / sigma with sigma = u^T W v, so the gradient flows through sigma. An inference call uses
the stored u, v without iterating. (Keras's own `SpectralNormalization` overwrites the kernel
in place, which neither matches PyTorch nor keeps W trainable.)
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def _l2_normalize(x, eps):
    # torch.nn.functional.normalize: x / max(||x||, eps)
    return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x))), eps)


@keras.saving.register_keras_serializable(package="spade_tf")
class SpectralNormalization(keras.layers.Wrapper):
    """Wraps a `Conv2D` or `Dense` layer and uses its kernel divided by its spectral norm.

    The kernel is viewed as PyTorch's `weight.reshape(out, -1)` (columns ordered in, kh, kw),
    so u: [out] and v: [in*kh*kw] are laid out exactly as PyTorch's `weight_u`, `weight_v`.

    Input / output shapes are those of the wrapped layer.
    """

    def __init__(self, layer, power_iterations=1, eps=1e-12, **kwargs):
        super().__init__(layer, **kwargs)
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            raise TypeError(f"SpectralNormalization wraps Conv2D or Dense, got {type(layer).__name__}")
        self.power_iterations = power_iterations
        self.eps = eps

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        out_dim = self.layer.kernel.shape[-1]
        in_dim = 1
        for d in self.layer.kernel.shape[:-1]:
            in_dim *= d
        normal = keras.initializers.RandomNormal(0.0, 1.0)
        self.u = self.add_weight(name="u", shape=(out_dim,), initializer=normal, trainable=False)
        self.v = self.add_weight(name="v", shape=(in_dim,), initializer=normal, trainable=False)
        self.u.assign(_l2_normalize(self.u, self.eps))
        self.v.assign(_l2_normalize(self.v, self.eps))
        self.built = True

    def _matrix_and_order(self, kernel):
        """(M, to_ours, to_torch): the kernel as M = [kh*kw*in, out] (a free reshape of HWIO),
        which is PyTorch's `weight.reshape(out, -1)` transposed with its columns reordered, and
        the maps between that column order (in, kh, kw) and M's row order (kh, kw, in).

        Permuting the small vector v instead of transposing the kernel saves two full passes over
        every kernel per call. Dense kernels [in, out] need no reordering.
        """
        if kernel.ndim == 2:
            return kernel, (lambda v: v), (lambda v: v)
        kh, kw, cin, cout = kernel.shape
        return (ops.reshape(kernel, (kh * kw * cin, cout)),
                lambda v: ops.reshape(ops.transpose(ops.reshape(v, (cin, kh, kw)), (1, 2, 0)), (-1,)),
                lambda v: ops.reshape(ops.transpose(ops.reshape(v, (kh, kw, cin)), (2, 0, 1)), (-1,)))

    def sigma(self, training=False):
        """sigma = u^T W v (W: PyTorch's [out, in*kh*kw] view of the kernel); a training call first
        runs the power iteration and stores the new u, v (no gradient through them)."""
        matrix, to_ours, to_torch = self._matrix_and_order(ops.convert_to_tensor(self.layer.kernel))
        u, v = ops.convert_to_tensor(self.u), ops.convert_to_tensor(self.v)
        if training and self.power_iterations > 0:
            m_const = ops.stop_gradient(matrix)
            for _ in range(self.power_iterations):
                v = _l2_normalize(ops.matmul(m_const, u), self.eps)  # W^T u, in M's row order
                u = _l2_normalize(ops.matmul(v, m_const), self.eps)  # W v
                v = to_torch(v)
            self.u.assign(u)
            self.v.assign(v)
        return ops.sum(u * ops.matmul(to_ours(v), matrix))

    def normalized_kernel(self, training=False):
        """W / sigma, the kernel the layer applies."""
        kernel = self.layer.kernel
        return kernel / ops.cast(self.sigma(training), kernel.dtype)

    def call(self, inputs, training=False):
        layer = self.layer
        dtype = layer.compute_dtype
        sigma = self.sigma(training)
        kernel = ops.convert_to_tensor(layer.kernel)
        # x * (W / sigma) = (x * W) / sigma: divide whichever is smaller, the kernel or the output
        # (the 1024-channel kernels at 8x8-32x32 are far larger than their outputs)
        batch = inputs.shape[0] if inputs.shape[0] is not None else 1
        out_elements = None if None in inputs.shape[1:-1] else batch * int(np.prod(inputs.shape[1:-1]))
        scale_output = out_elements is not None and out_elements < int(np.prod(kernel.shape[:-1]))
        if not scale_output:
            kernel = kernel / ops.cast(sigma, kernel.dtype)
        kernel = ops.cast(kernel, dtype)
        if isinstance(layer, keras.layers.Conv2D):
            outputs = layer.convolution_op(inputs, kernel)
        else:
            outputs = ops.matmul(inputs, kernel)
        if scale_output:
            outputs = outputs / ops.cast(sigma, dtype)
        if layer.use_bias:
            outputs = outputs + ops.cast(layer.bias, dtype)
        if layer.activation is not None:
            outputs = layer.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"power_iterations": self.power_iterations, "eps": self.eps})
        return config
