"""Peak memory and time of EWC's Fisher against the number of samples, on
the permuted-MNIST preset's MLP (van de Ven & Tolias: 32x32 inputs, two
layers of 1,000): the samples are reduced in chunks, so 60,000 should cost
the memory of 1,000.

    python benchmarks/fisher_memory.py --data-dir ../shared/data
    python benchmarks/fisher_memory.py --samples 1000,60000 --kind exact
    python benchmarks/fisher_memory.py --kind exact --outputs 100 --heads 100,10

Two paths, each count in a fresh process: ``closed-form``, the MLP as the
package computes its Fisher (from its dense layers' inputs and output
gradients), and ``per-example``, the same MLP hidden inside a module
without dense layers, as any other model's Fisher is computed (each
example's gradient). Each process reports its peak resident memory
(``ru_maxrss``, the data included) and the Fisher's time after a first,
compiling call (``--repeats`` calls, median). Prints a row per path and
count, the ratio of peaks against the first count, and the per-example
path's time against the closed form's. ``--heads`` times each example's
own head of that many outputs, each against the first: the exact Fisher's
backward passes follow the head, not the outputs.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

WORKER = '--worker'


def _opaque(model):
  """``model`` inside a module without ``dense_layers``: its Fisher is
  taken example by example."""
  from flax import nnx  # noqa: PLC0415

  class Opaque(nnx.Module):
    def __init__(self, inner):
      self.inner = inner

    def __call__(self, x):
      return self.inner(x)

  return Opaque(model)


def heads(outputs: int, head: int) -> np.ndarray:
  """The training masks of heads of ``head`` outputs each (the last one
  shorter where ``head`` does not divide ``outputs``): label ``c`` trains
  the outputs of its own head, as a task-incremental stream's tasks do."""
  group = np.arange(outputs) // head
  return group[:, None] == group[None]


def measure(samples: int, kind: str, data_dir: str, repeats: int,
            path: str, outputs: int, head: int) -> dict:
  """In this process: the Fisher of ``samples`` MNIST examples (framed to
  32x32) on the preset's freshly initialised MLP, by ``path``, each
  example's own head ``head`` of the ``outputs``."""
  from flax import nnx  # noqa: PLC0415
  import jax  # noqa: PLC0415 (the parent process measures nothing)

  from classp_optax.continual import datasets  # noqa: PLC0415
  from classp_optax.continual import hooks as hooklib  # noqa: PLC0415
  from classp_optax.continual import models  # noqa: PLC0415
  from classp_optax.continual import steps  # noqa: PLC0415
  from classp_optax.continual.methods import fisher  # noqa: PLC0415

  data = datasets.pad(datasets.load_idx_dataset('mnist', data_dir), 2)
  model = models.make_model('mlp', (32, 32, 1), outputs, 0,
                            hidden=(1000, 1000),
                            init='torch')
  model = _opaque(model) if path == 'per-example' else model
  model.eval()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  task = hooklib.TaskData(jax.device_put(data.x_train),
                          jax.device_put(data.y_train),
                          jax.device_put(heads(outputs, head)),
                          0)
  net = hooklib.Model(graphdef, rest, steps.masked_cross_entropy)
  positions = np.arange(samples, dtype=np.int32) % len(data.y_train)
  weights = np.ones(samples, np.float32)
  run = jax.jit(lambda p, key: fisher.fisher_of(
      kind, net, p, task, positions, weights, key))
  jax.block_until_ready(run(params, jax.random.key(0)))
  seconds = []
  for k in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(run(params, jax.random.key(k)))
    seconds.append(time.perf_counter() - start)
  return dict(samples=samples, kind=kind, path=path, head=head,
              seconds=statistics.median(seconds),
              peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data-dir', default=os.environ.get('CLASSP_DATA_DIR'))
  parser.add_argument('--samples', default='1000,60000')
  parser.add_argument('--kind', default='empirical')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--paths', default=','.join(PATHS))
  parser.add_argument('--outputs', type=int, default=10,
                      help='the MLP\'s outputs, every one in each head '
                           '(100: permuted MNIST class-incremental)')
  parser.add_argument('--heads', default=None,
                      help='comma-separated head sizes to time, each '
                           "example's own head of that many outputs (10 of "
                           "100: permuted MNIST task-incremental; default: "
                           'every output)')
  args = parser.parse_args(argv)
  heads_of = _head_sizes(parser, args.heads, args.outputs)
  rows = {}
  for path in args.paths.split(','):
    for samples in map(int, args.samples.split(',')):
      for head in heads_of:
        rows[path, samples, head] = r = _worker(args, samples, path, head)
        print(f'{path:>11}, {samples:>6} samples ({r["kind"]}, heads of '
              f'{head} of {args.outputs}): peak {r["peak_mib"]:6.0f} MiB, '
              f'{r["seconds"]:7.2f} s '
              f'({1e3 * r["seconds"] / samples:.3f} ms a sample)', flush=True)
  _ratios(rows)
  return 0


PATHS = ('closed-form', 'per-example')


def _head_sizes(parser, text: str | None, outputs: int) -> list[int]:
  """``--heads`` as a list (every output if not given), or argparse's
  refusal naming the sizes it takes."""
  if text is None:
    return [outputs]
  try:
    sizes = [int(h) for h in text.split(',')]
  except ValueError:
    sizes = []
  if not sizes or not all(1 <= h <= outputs for h in sizes):
    parser.error(f'argument --heads: head sizes from 1 to {outputs} (the '
                 f'outputs) separated by commas, e.g. {outputs},10; got '
                 f'{text!r}')
  return sizes


def _worker(args, samples: int, path: str, head: int) -> dict:
  done = subprocess.run(
      [sys.executable, __file__, WORKER, str(samples), args.kind,
       args.data_dir, str(args.repeats), path, str(args.outputs), str(head)],
      capture_output=True, text=True, check=True)
  return json.loads(done.stdout.splitlines()[-1])


def _ratios(rows: dict) -> None:
  """Peak memory against the first count, per path; per-example time
  against the closed form's; each head's time against the first head's."""
  first = next(iter(rows))[2]
  for path in dict.fromkeys(p for p, _, _ in rows):
    mine = [(n, r) for (p, n, h), r in rows.items() if p == path and h == first]
    base = mine[0][1]['peak_mib']
    print(f'{path}: peak memory against {mine[0][0]} samples: ' + ', '.join(
        f'{n}: {r["peak_mib"] / base:.3f}x' for n, r in mine))
  for (path, n, h), r in rows.items():
    if path == 'per-example' and ('closed-form', n, h) in rows:
      print(f'{n} samples, heads of {h}: per-example / closed-form time '
            f'{r["seconds"] / rows["closed-form", n, h]["seconds"]:.1f}x')
    if h != first:
      print(f'{path}, {n} samples: heads of {h} / heads of {first} time '
            f'{r["seconds"] / rows[path, n, first]["seconds"]:.3f}x')


if __name__ == '__main__':
  if len(sys.argv) > 1 and sys.argv[1] == WORKER:
    samples, kind, data_dir, repeats, path, outputs, head = sys.argv[2:9]
    print(json.dumps(measure(int(samples), kind, data_dir, int(repeats),
                             path, int(outputs), int(head))))
  else:
    sys.exit(main())
