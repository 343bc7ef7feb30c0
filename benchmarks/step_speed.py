"""Times one optimizer step (update + apply, jitted, buffers donated).

For each size (parameters in float32, split over 10 leaves) it times CLASSP with
power 1, 2 and 3 (and power 2 with the relative threshold, which adds one
reduction per tensor) against optax.adagrad and optax.sgd, and, when PyTorch is
installed, PyTorch's fused Adagrad and CLASSP written as the reference PyTorch
code writes it (a Python loop over parameters of unfused tensor ops). A copy
probe measures the memory bandwidth the machine gives a single pass.

The methods are interleaved: every round runs each once, in a new random
order, so that a slow moment of the shared machine falls on all of them. It
prints each method's median time, its ratio to optax.adagrad taken round by
round (the median, and the spread: the lowest and highest round), and the
effective bandwidth: CLASSP moves 5 floats per parameter per step (reads the
parameter, gradient and grad_sum; writes the parameter and grad_sum). The
JAX, jaxlib and optax versions head the output.

    python benchmarks/step_speed.py --sizes 1e6 1e7 5e7 --repeats 9
    python benchmarks/step_speed.py --sizes 1e6 --hlo   # fusions per step
"""

import argparse
import platform
import random
import statistics
import time

import jax
import jax.numpy as jnp
import jaxlib
import optax

from classp_optax import classp

try:
  import torch
except ImportError:
  torch = None

N_LEAVES = 10
FLOATS_MOVED = 5  # per parameter per step, for every method timed here
BASELINE = 'optax.adagrad'


def leaf_sizes(total):
  base = total // N_LEAVES
  return [base + (1 if i < total % N_LEAVES else 0) for i in range(N_LEAVES)]


def optax_methods():
  return {
      'classp p=1': classp(1e-3, threshold=1e-8, power=1),
      'classp p=2': classp(1e-3, threshold=1e-8, power=2),
      'classp p=3': classp(1e-3, threshold=1e-8, power=3),
      'classp p=2 relative': classp(1e-3, threshold=0.5, power=2,
                                    relative_threshold=True),
      'optax.adagrad': optax.adagrad(1e-3, initial_accumulator_value=1e-5, eps=0),
      'optax.sgd': optax.sgd(1e-3),
  }


def make_optax_step(tx, total):
  """A jitted, donated step and a closure that runs it once to completion."""
  keys = jax.random.split(jax.random.key(0), N_LEAVES)
  sizes = leaf_sizes(total)
  params = [jnp.zeros(n, jnp.float32) for n in sizes]
  grads = [jax.random.normal(k, (n,)) for k, n in zip(keys, sizes, strict=True)]

  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  jitted = jax.jit(step, donate_argnums=(0, 1))
  carry = [params, tx.init(params)]

  def run_once():
    carry[0], carry[1] = jitted(carry[0], carry[1], grads)
    jax.block_until_ready(carry)

  return run_once, jitted.lower(params, carry[1], grads)


def donated_runner(fn, initial):
  """Runs ``fn`` jitted, its input donated and replaced by its output."""
  jitted = jax.jit(fn, donate_argnums=0)
  carry = [initial]

  def run_once():
    carry[0] = jitted(carry[0])
    jax.block_until_ready(carry[0])

  return run_once


def copy_probe(total):
  """One read and one write of ``total`` floats: the bandwidth ceiling."""
  return donated_runner(lambda x: x + 1.0, jnp.ones(total, jnp.float32))


def dispatch_floor(total):
  """The same jitted, donated call over the same 10 leaves doing no work: the
  per-step overhead that no optimizer written in JAX can go below."""
  return donated_runner(
      lambda params: params,
      [jnp.zeros(n, jnp.float32) for n in leaf_sizes(total)],
  )


def torch_methods(total):
  """PyTorch's fused Adagrad and the reference-style CLASSP loop."""
  torch.manual_seed(0)
  sizes = leaf_sizes(total)
  params = [torch.zeros(n, requires_grad=True) for n in sizes]
  for p in params:
    p.grad = torch.randn(p.shape)
  adagrad = torch.optim.Adagrad(params, lr=1e-3, fused=True)

  grad_sums = [torch.zeros_like(p) for p in params]

  def reference_style_classp(power, lr=1e-3, threshold=1e-8, eps=1e-5):
    @torch.no_grad()
    def step():
      for p, grad_sum in zip(params, grad_sums, strict=True):
        grad = p.grad
        mask = grad**2 > threshold
        grad_sum.add_(torch.where(mask, grad.abs() ** power, 0.0))
        scaling = lr / (grad_sum + eps).pow(1.0 / power)
        p.add_(torch.where(mask, -scaling * grad, 0.0))
    return step

  return {
      'torch Adagrad fused': adagrad.step,
      **{f'torch reference-style p={p}': reference_style_classp(float(p))
         for p in (1, 2, 3)},
  }


def time_it(run_once, repeats, warmup=2):
  for _ in range(warmup):
    run_once()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run_once()
    times.append(time.perf_counter() - start)
  return times


def count_fusions(lowered):
  hlo = lowered.compile().as_text()
  entry = hlo[hlo.index('ENTRY'):]
  return entry.count(' fusion('), entry.count('\n') - 1


def interleaved_samples(runners: dict, repeats: int) -> dict:
  """Each runner's times, one run each per round in a new random order, so
  that the machine's noise, and PyTorch's OpenMP threads still spinning
  after their step, fall on all of them alike."""
  for run_once in runners.values():
    time_it(run_once, repeats=0)
  samples = {name: [] for name in runners}
  order = random.Random(0)
  for _ in range(repeats):
    for name in order.sample(list(runners), len(runners)):
      samples[name] += time_it(runners[name], repeats=1, warmup=0)
  return samples


def print_ratios(samples: dict, medians: dict) -> None:
  """The reference-style speed-ups and the costs of p=3 and the relative
  gate, against the copy probe's bound."""
  # No step that reads and writes 5 floats per parameter can beat the copy
  # probe's bandwidth: a bound on any implementation, measured in this run.
  bound = medians['copy probe (x + 1)'] * FLOATS_MOVED / 2
  print(f'one pass at the copy probe\'s bandwidth: {bound * 1e3:.2f} ms')
  if torch is not None:
    for p in (1, 2, 3):
      reference = medians[f'torch reference-style p={p}']
      speedup = reference / medians[f'classp p={p}']
      print(f'classp p={p} is {speedup:.1f}x faster than reference-style '
            f'(the bandwidth bound allows {reference / bound:.1f}x)')
  for name, baseline in [('classp p=3', 'classp p=2'),
                         ('classp p=2 relative', 'classp p=2')]:
    ratios = [a / b for a, b in zip(samples[name], samples[baseline],
                                    strict=True)]
    print(f'{name} / {baseline}: {statistics.median(ratios):.2f} '
          f'({min(ratios):.2f}, {max(ratios):.2f})')


def print_table(total: int, samples: dict, repeats: int) -> None:
  medians = {name: statistics.median(t) for name, t in samples.items()}
  print(f'\n{total:,} parameters, {repeats} rounds')
  print(f'{"method":30} {"median ms":>9} {"vs adagrad":>11} '
        f'{"(lowest, highest round)":>24} {"GB/s":>7}')
  for name, seconds in medians.items():
    floats = {'copy': 2, 'jit ': 0}.get(name[:4], FLOATS_MOVED)
    gbps = floats * 4 * total / seconds / 1e9
    ratios = [a / b for a, b in zip(samples[name], samples[BASELINE],
                                    strict=True)]
    spread = f'({min(ratios):.2f}, {max(ratios):.2f})'
    print(f'{name:30} {seconds * 1e3:9.2f} {statistics.median(ratios):11.2f} '
          f'{spread:>24} {gbps:7.1f}')
  print_ratios(samples, medians)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--sizes', type=float, nargs='+', default=[1e6, 1e7, 5e7])
  parser.add_argument('--repeats', type=int, default=9)
  parser.add_argument('--hlo', action='store_true',
                      help='also print the fusions in each compiled step')
  args = parser.parse_args()

  print(f'jax {jax.__version__}, jaxlib {jaxlib.__version__}, optax '
        f'{optax.__version__} on {jax.devices()[0].device_kind}; '
        f'{platform.processor() or platform.machine()}; '
        f'torch {torch.__version__ if torch else "absent (rows skipped)"}; '
        f'{time.strftime("%Y-%m-%d")}')
  for total in map(int, args.sizes):
    runners = {}
    for name, tx in optax_methods().items():
      runners[name], lowered = make_optax_step(tx, total)
      if args.hlo:
        fusions, instructions = count_fusions(lowered)
        print(f'  {name}: {fusions} fusions in {instructions} entry '
              f'instructions for {N_LEAVES} leaves')
    if torch is not None:
      runners.update(torch_methods(total))
    runners['copy probe (x + 1)'] = copy_probe(total)
    runners['jit dispatch floor'] = dispatch_floor(total)
    print_table(total, interleaved_samples(runners, args.repeats), args.repeats)


if __name__ == '__main__':
  main()
