"""An independent NumPy implementation of CLASSP, written from the spec."""

import numpy as np


def classp_numpy(grads, *, learning_rate, threshold, power, eps, apply_decay,
                 dtype, relative_threshold=False):
  """Runs CLASSP over a sequence of gradients for one array.

  Returns the parameter deltas of every step and the final grad_sum, computed
  in ``dtype`` element by element, with the textbook ``**`` for every power.
  A complex ``dtype`` gates and accumulates on the modulus ``|g|``, in the
  matching real dtype. With ``relative_threshold`` the gate at each step is
  ``threshold`` times the array's mean ``|g|**2`` at that step.
  """
  real = np.finfo(dtype).dtype.type
  grad_sum = np.zeros(np.shape(grads[0]), real)
  deltas = []
  for g in grads:
    g = np.asarray(g, dtype)
    delta = np.zeros_like(g)
    gate = threshold
    if relative_threshold:
      gate = threshold * sum(np.abs(g[i]) ** 2 for i in np.ndindex(g.shape)) / g.size
    for i in np.ndindex(g.shape):
      if np.abs(g[i]) ** 2 > gate:
        grad_sum[i] += np.abs(g[i]) ** real(power)
        step = learning_rate
        if apply_decay:
          step = learning_rate / (real(eps) + grad_sum[i]) ** real(1 / power)
        delta[i] = -step * g[i]
    deltas.append(delta)
  return deltas, grad_sum
