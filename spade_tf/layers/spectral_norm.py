"""Spectral normalization (Miyato et al., 2018) as PyTorch's `torch.nn.utils.spectral_norm`.

The wrapped layer's kernel W stays the trainable variable. u and v are non-trainable state.
A training call runs one power iteration (u, v updated, gradients not taken through them) and
uses W / sigma with sigma = u^T W v, so the gradient flows through sigma. An inference call uses
the stored u, v without iterating. (Keras's own `SpectralNormalization` overwrites the kernel
in place, which neither matches PyTorch nor keeps W trainable.)
"""

from __future__ import annotations

import keras
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

    def _weight_matrix(self, kernel):
        """[out, in*kh*kw] in PyTorch's element order."""
        if kernel.ndim == 4:  # HWIO -> OIHW
            kernel = ops.transpose(kernel, (3, 2, 0, 1))
        else:  # Dense [in, out] -> [out, in]
            kernel = ops.transpose(kernel)
        return ops.reshape(kernel, (kernel.shape[0], -1))

    def normalized_kernel(self, training=False):
        kernel = self.layer.kernel
        w_mat = self._weight_matrix(ops.convert_to_tensor(kernel))
        u, v = ops.convert_to_tensor(self.u), ops.convert_to_tensor(self.v)
        if training and self.power_iterations > 0:
            w_const = ops.stop_gradient(w_mat)
            for _ in range(self.power_iterations):
                v = _l2_normalize(ops.matmul(u, w_const), self.eps)
                u = _l2_normalize(ops.matmul(w_const, v), self.eps)
            self.u.assign(u)
            self.v.assign(v)
        sigma = ops.sum(u * ops.matmul(w_mat, v))
        return kernel / ops.cast(sigma, kernel.dtype)

    def call(self, inputs, training=False):
        kernel = self.normalized_kernel(training)
        layer = self.layer
        kernel = ops.cast(kernel, layer.compute_dtype)
        if isinstance(layer, keras.layers.Conv2D):
            outputs = layer.convolution_op(inputs, kernel)
        else:
            outputs = ops.matmul(inputs, kernel)
        if layer.use_bias:
            outputs = outputs + ops.cast(layer.bias, layer.compute_dtype)
        if layer.activation is not None:
            outputs = layer.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"power_iterations": self.power_iterations, "eps": self.eps})
        return config
