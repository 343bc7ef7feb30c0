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
"""

import argparse
import json
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

CLASS_IL = re.compile(r'Accuracy for 5 task\(s\):\s*\[Class-IL\]: ([\d.]+)')


def timed(command: list[str], cwd=None) -> tuple[float, str]:
  """Seconds ``command`` ran, and its output; exits if it failed."""
  start = time.perf_counter()
  done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
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


def ours(args, method: str) -> tuple[float, float]:
  """Our run's seconds and final class-incremental accuracy (%)."""
  with tempfile.TemporaryDirectory() as out:
    seconds, _ = timed(
        [sys.executable, '-m', 'classp_optax.continual', '--benchmark',
         'split-mnist-der', '--methods', method, '--data-dir', args.data_dir,
         '--out', out, '--no-progress'])
    result = json.loads((pathlib.Path(out) / 'results.json').read_text())
  return seconds, 100 * result['results'][0]['average_accuracy']


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data-dir', required=True)
  parser.add_argument('--mammoth', required=True)
  parser.add_argument('--mammoth-python', required=True)
  parser.add_argument('--methods', default='er,derpp')
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args(argv)
  for method in args.methods.split(','):
    times = {'mammoth': [], 'ours': []}
    for k in range(args.repeats):
      for name, run in (('mammoth', mammoth), ('ours', ours)):
        seconds, accuracy = run(args, method)
        times[name].append(seconds)
        print(f'{method} {name} run {k}: {seconds:.1f} s, class-IL '
              f'{accuracy:.2f}%', flush=True)
    theirs, mine = (statistics.median(times[n]) for n in ('mammoth', 'ours'))
    print(f'{method}: median mammoth {theirs:.1f} s, ours {mine:.1f} s, '
          f'ours {theirs / mine:.1f}x faster', flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
