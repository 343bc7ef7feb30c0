"""End-to-end time of ER and DER++ on seq-mnist (buffer 200): this package's
command against the DER paper's own code, on the same machine, in turns.

    python benchmarks/mammoth_speed.py --data-dir ../shared/data \
        --mammoth ../peer/mammoth --mammoth-python ../peer/venv/bin/python

``--mammoth`` is a checkout of aimagelab/mammoth at tag ``neurips2020``, run
with its own Python (PyTorch and torchvision installed there, never in this
project) as its users run it: ``utils/main.py --dataset seq-mnist --model
<m> --buffer_size 200 --load_best_args``; its MNIST files must be under
``<mammoth>/data/MNIST/MyMNIST/raw``. Ours is ``classp-continual --benchmark
split-mnist-der --methods <m>``. Both are timed as whole processes (start-up,
data loading, compilation, training and evaluation), ``--repeats`` times in
alternation; the script prints each time, the medians, the ratio of medians
and each run's final class-incremental accuracy, so that a fast run that
learned nothing cannot pass for a result.

Ours is timed twice over: ``cold``, with an empty cache of compiled programs
(a first run on a fresh machine: every program compiled), and ``warm``, with
the cache the command keeps (``compile_cache``) filled by one untimed run
before (any later run: another seed, the next sitting). PyTorch compiles
nothing, so Mammoth has one time.
"""

import argparse
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

CLASS_IL = re.compile(r'Accuracy for 5 task\(s\):\s*\[Class-IL\]: ([\d.]+)')


def timed(command: list[str], cwd=None, env=None) -> tuple[float, str]:
  """Seconds ``command`` ran, and its output; exits if it failed."""
  start = time.perf_counter()
  done = subprocess.run(command, cwd=cwd, env=env, capture_output=True,
                        text=True)
  seconds = time.perf_counter() - start
  if done.returncode != 0:
    sys.exit(f'{" ".join(command)} failed:\n{done.stderr[-2000:]}')
  return seconds, done.stdout + done.stderr


def mammoth(args, method: str) -> tuple[float, float]:
  """Their run's seconds and final Class-IL accuracy (%)."""
  python = str(pathlib.Path(args.mammoth_python).absolute())  # cwd changes
  seconds, output = timed(
      [python, 'utils/main.py', '--dataset', 'seq-mnist', '--model', method,
       '--buffer_size', '200', '--load_best_args'], cwd=args.mammoth)
  return seconds, float(CLASS_IL.findall(output)[-1])


def ours(args, method: str, cache: str) -> tuple[float, float]:
  """Our run's seconds and final class-incremental accuracy (%), with its
  compiled programs cached in ``cache`` (an empty folder: a cold run)."""
  env = {k: v for k, v in os.environ.items()
         if k != 'JAX_COMPILATION_CACHE_DIR'}
  with tempfile.TemporaryDirectory() as out:
    seconds, _ = timed(
        [sys.executable, '-m', 'classp_optax.continual', '--benchmark',
         'split-mnist-der', '--methods', method, '--data-dir', args.data_dir,
         '--out', out, '--no-progress'], env=dict(env, XDG_CACHE_HOME=cache))
    result = json.loads((pathlib.Path(out) / 'results.json').read_text())
  return seconds, 100 * result['results'][0]['average_accuracy']


def ours_cold(args, method: str) -> tuple[float, float]:
  with tempfile.TemporaryDirectory() as cache:
    return ours(args, method, cache)


def _compare(args, method: str, runners: dict) -> None:
  """Each runner ``--repeats`` times, in turns; the medians and ratios."""
  times = {name: [] for name in runners}
  for k in range(args.repeats):
    for name, run in runners.items():
      seconds, accuracy = run(args, method)
      times[name].append(seconds)
      print(f'{method} {name} run {k}: {seconds:.1f} s, class-IL '
            f'{accuracy:.2f}%', flush=True)
  theirs = statistics.median(times['mammoth'])
  for name in runners:
    if name != 'mammoth':
      mine = statistics.median(times[name])
      print(f'{method}: median mammoth {theirs:.1f} s, {name} {mine:.1f} s: '
            f'{theirs / mine:.1f}x faster', flush=True)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data-dir', required=True)
  parser.add_argument('--mammoth', required=True)
  parser.add_argument('--mammoth-python', required=True)
  parser.add_argument('--methods', default='er,derpp')
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory() as warm:
    for method in args.methods.split(','):
      ours(args, method, warm)  # fills the warm cache, untimed
      _compare(args, method, {
          'mammoth': mammoth, 'ours cold': ours_cold,
          'ours warm': lambda a, m: ours(a, m, warm)})
  return 0


if __name__ == '__main__':
  sys.exit(main())
