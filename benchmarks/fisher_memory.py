"""Peak memory and time of EWC's Fisher against the number of samples, on
the permuted-MNIST preset's MLP (van de Ven & Tolias: 32x32 inputs, two
layers of 1,000): the samples are reduced in chunks, so 60,000 should cost
the memory of 1,000.

    python benchmarks/fisher_memory.py --data-dir ../shared/data
    python benchmarks/fisher_memory.py --samples 1000,60000 --kind exact

Each count runs in a fresh process, which reports its peak resident memory
(``ru_maxrss``, the data included) and the Fisher's time after a first,
compiling call (``--repeats`` calls, median). Prints a row per count and
the ratio of peaks against the smallest count.
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


def measure(samples: int, kind: str, data_dir: str, repeats: int) -> dict:
  """In this process: the Fisher of ``samples`` MNIST examples (framed to
  32x32) on the preset's freshly initialised MLP."""
  from flax import nnx  # noqa: PLC0415
  import jax  # noqa: PLC0415 (the parent process measures nothing)

  from classp_optax.continual import datasets  # noqa: PLC0415
  from classp_optax.continual import hooks as hooklib  # noqa: PLC0415
  from classp_optax.continual import models  # noqa: PLC0415
  from classp_optax.continual import steps  # noqa: PLC0415
  from classp_optax.continual.methods import fisher  # noqa: PLC0415

  data = datasets.pad(datasets.load_idx_dataset('mnist', data_dir), 2)
  model = models.make_model('mlp', (32, 32, 1), 10, 0, hidden=(1000, 1000),
                            init='torch')
  model.eval()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  task = hooklib.TaskData(jax.device_put(data.x_train),
                          jax.device_put(data.y_train),
                          jax.device_put(np.ones((10, 10), bool)), 0)
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
  return dict(samples=samples, kind=kind, seconds=statistics.median(seconds),
              peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data-dir', default=os.environ.get('CLASSP_DATA_DIR'))
  parser.add_argument('--samples', default='1000,60000')
  parser.add_argument('--kind', default='empirical')
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args(argv)
  rows = []
  for samples in map(int, args.samples.split(',')):
    done = subprocess.run(
        [sys.executable, __file__, WORKER, str(samples), args.kind,
         args.data_dir, str(args.repeats)],
        capture_output=True, text=True, check=True)
    rows.append(json.loads(done.stdout.splitlines()[-1]))
    r = rows[-1]
    print(f'{r["samples"]:>7} samples ({r["kind"]}): peak {r["peak_mib"]:8.0f} '
          f'MiB, {r["seconds"]:7.2f} s ({1e3 * r["seconds"] / r["samples"]:.2f}'
          ' ms a sample)', flush=True)
  base = rows[0]['peak_mib']
  print('peak memory against the first: ' + ', '.join(
      f'{r["samples"]}: {r["peak_mib"] / base:.3f}x' for r in rows))
  return 0


if __name__ == '__main__':
  if len(sys.argv) > 1 and sys.argv[1] == WORKER:
    samples, kind, data_dir, repeats = sys.argv[2:6]
    print(json.dumps(measure(int(samples), kind, data_dir, int(repeats))))
  else:
    sys.exit(main())
