"""How fast the training engine runs, against a minimal hand-written JAX loop.

(a) ms per train step of the engine (``train`` of one run on one task
    of MNIST, everything included: the data's upload, the dispatches, the
    progress checks, one evaluation) against a minimal ``lax.scan`` loop over
    device-resident data with the same model, optimizer and batches, at
    several batch sizes, for the MLP 784-256-256-10 (2000 steps) and the
    paper's CNN (6400 examples).
    The two are timed in turn, after a warm-up run, and the ratio's median
    over the repeats is printed.
(b) compiles per 5-task run for each method (split digits): the train step,
    the hooks' start and end of a task, and the evaluation.
(c) the share of wall time spent in evaluation on permuted MNIST with 20
    tasks (the ``permuted-mnist`` benchmark's protocol), beside the share of
    the floating-point work that evaluation is: no loop can go below that.
(d) training examples per second of a sweep of K = 6 CLASSP learning rates
    (``train`` of the sweep: one vmapped program, its configurations split
    over the devices) against the same 6 runs one after another
    (``train`` of each run, on one device), and against a PyTorch loop in the
    style of the CLASSP reference code (one Python step per batch, timed on
    one of the six runs; skipped when torch is not installed), on split
    digits (the embedded benchmark: MLP 64-128-128-10, batch 16) and split
    MNIST (MLP 784-256-256-10, batch 32), 5 tasks of one epoch each. The
    sweep is also timed on one device, which shows what vmap alone gives.
    On a CPU the benchmark splits the host into ``--cpu-devices`` devices
    (default: one per core) before JAX starts. Medians of interleaved
    repeats, after a warm-up of each.

    python benchmarks/loop_speed.py --data-dir ../shared/data
    python benchmarks/loop_speed.py --part a --models cnn --repeats 3
    python benchmarks/loop_speed.py --part d --repeats 5

The data directory defaults to ``$CLASSP_DATA_DIR``.
"""

import argparse
import contextlib
import dataclasses
import functools
import logging
import math
import os
import platform
import statistics
import time

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from classp_optax.continual import Run
from classp_optax.continual import datasets
from classp_optax.continual import engine
from classp_optax.continual import make_method
from classp_optax.continual import models
from classp_optax.continual import placement
from classp_optax.continual import streams
from classp_optax.continual import suites
from classp_optax.continual.config import TrainConfig
from classp_optax.continual.config import task_order
from classp_optax.continual.methods import METHODS
from classp_optax.continual.steps import masked_cross_entropy

try:
  import torch
except ImportError:  # optional: only for the PyTorch row of part (d)
  torch = None

LEARNING_RATE = 0.05


def one_task(dataset, batch_size: int, steps: int):
  """A task of about ``steps`` steps over ``dataset``'s training set (several
  epochs of a prefix when one epoch is too short), with 1000 test examples."""
  per_epoch = min(steps, len(dataset.y_train) // batch_size)
  epochs = math.ceil(steps / per_epoch)
  task = dataclasses.replace(
      streams.sequence(dataset)[0],
      train_index=np.arange(per_epoch * batch_size),
      test_index=np.arange(1000))
  return task, epochs, per_epoch * epochs


def toolkit_runner(make_model, task, config):
  method = make_method('classp', learning_rate=LEARNING_RATE,
                       decay_from_task=0)

  def run():
    engine.train(Run(make_model, [task], method, config))

  return run


def minimal_runner(make_model, task, config):
  """The same work written as short as JAX allows: the data and the batch
  order put on the device, one ``lax.scan`` over every step (for a
  convolutional model on the CPU, where XLA is much slower on a
  convolution's gradient inside a loop, jax-ml/jax#12868, one jitted step
  per batch instead), then one evaluation on the test set."""
  method = make_method('classp', learning_rate=LEARNING_RATE,
                       decay_from_task=0)
  tx = method.optimizer
  model = make_model()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  model.eval()
  eval_graphdef, _ = nnx.split(model)
  mask = jnp.asarray(task.logit_mask())
  masks = jnp.asarray(task.train_logit_masks())

  def step(x, y, carry, rows):
    params, rest, opt_state = carry
    model = nnx.merge(graphdef, params, rest)

    def loss_fn(model):
      return masked_cross_entropy(model(x[rows]), y[rows], masks).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    rest = nnx.state(model, nnx.Not(nnx.Param))  # the dropout RNG moved
    updates, opt_state = tx.update(grads, opt_state, params)
    params = jax.tree.map(jnp.add, params, updates)
    return (params, rest, opt_state), loss

  @jax.jit
  def train(x, y, order, carry):
    return jax.lax.scan(functools.partial(step, x, y), carry, order)

  train_one = jax.jit(step)

  @jax.jit
  def correct(params, rest, x, y):
    logits = nnx.merge(eval_graphdef, params, rest)(x)
    return jnp.sum(jnp.argmax(jnp.where(mask, logits, -1e9), -1) == y)

  def run():
    x, y = (jnp.asarray(a)
            for a in task.train_batch(np.arange(task.num_train)))
    order = jnp.asarray(task_order(config, 0, task.num_train))
    carry = (params, rest, tx.init(params))
    if engine.default_steps_per_call(model) > 1:
      carry, _ = train(x, y, order, carry)
    else:
      for rows in order:
        carry, _ = train_one(x, y, carry, rows)
    int(correct(carry[0], carry[1], *map(jnp.asarray, task.test_set())))

  return run


def part_a(dataset, model_names, batch_sizes, repeats, steps):
  print('(a) ms per train step: the toolkit loop vs a minimal lax.scan loop '
        f'(median of {repeats}, interleaved; CLASSP, MNIST)')
  print(f'{"model":5} {"batch":>5} {"steps":>5} {"toolkit ms":>10} '
        f'{"minimal ms":>10} {"ratio":>6}')
  for name in model_names:
    hidden = (256, 256) if name == 'mlp' else None
    for batch_size in batch_sizes:
      task, epochs, n = one_task(dataset, batch_size, steps[name](batch_size))
      config = TrainConfig(epochs=epochs, batch_size=batch_size)
      extra = dict(hidden=hidden) if hidden else {}
      make_model = lambda name=name, extra=extra: models.make_model(
          name, (28, 28, 1), 10, seed=0, **extra)
      runners = dict(toolkit=toolkit_runner(make_model, task, config),
                     minimal=minimal_runner(make_model, task, config))
      for run in runners.values():
        run()  # compile
      times = {key: [] for key in runners}
      for _ in range(repeats):
        for key, run in runners.items():
          start = time.perf_counter()
          run()
          times[key].append((time.perf_counter() - start) / n * 1e3)
      ratios = [a / b for a, b in zip(times['toolkit'], times['minimal'],
                                      strict=True)]
      print(f'{name:5} {batch_size:5d} {n:5d} '
            f'{statistics.median(times["toolkit"]):10.3f} '
            f'{statistics.median(times["minimal"]):10.3f} '
            f'{statistics.median(ratios):6.2f}', flush=True)


COMPILED = ('stacked_train_steps', 'start_tasks', 'end_tasks',
            'correct_counts')


class _Compiles(logging.Handler):
  """Counts JAX's "Compiling jit(name)" log records by name."""

  def __init__(self):
    super().__init__(logging.WARNING)
    self.names = []

  def emit(self, record):
    message = record.getMessage()
    if message.startswith('Compiling jit('):
      self.names.append(message.split('(')[1].split(')')[0])


def part_b():
  print('\n(b) compiles per 5-task run (split digits, default settings)')
  tasks = streams.split(datasets.load_digits(), scenario='task')
  config = TrainConfig(epochs=1, batch_size=16, eval_batch_size=128)
  print(f'{"method":8} ' + ' '.join(f'{name:>14}' for name in COMPILED))
  for i, name in enumerate(sorted(METHODS)):
    make_model = lambda i=i: models.make_model('mlp', (8, 8, 1), 10, seed=0,
                                               hidden=(50 + i,))  # uncached
    counter = _Compiles()
    logger = logging.getLogger('jax')
    handlers, logger.handlers = logger.handlers, [counter]
    logger.propagate = False
    try:
      with jax.log_compiles():
        engine.train(Run(make_model, tasks, make_method(name), config))
    finally:
      logger.handlers, logger.propagate = handlers, True
    print(f'{name:8} ' + ' '.join(f'{counter.names.count(f):14d}'
                                  for f in COMPILED), flush=True)


def part_c(data_dir, num_tasks):
  suite = suites.SUITES['permuted-mnist']
  print(f'\n(c) evaluation\'s share of wall time: permuted MNIST, {num_tasks} '
        f'tasks, batch {suite.batch_size}, {suite.epochs} epoch per task, MLP '
        f'{suite.hidden}, CLASSP')
  tasks = suite.make_tasks(data_dir, 0, num_tasks, suite.default_scenario)
  config = TrainConfig(epochs=suite.epochs, batch_size=suite.batch_size)
  start = time.perf_counter()
  result = engine.train(Run(
      lambda: models.make_model('mlp', (28, 28, 1), 10, seed=0,
                                hidden=suite.hidden),
      tasks, make_method('classp', **suite.method_defaults['classp']), config))
  wall = time.perf_counter() - start
  evaluation = [result.phase_seconds['evaluation']]
  # Multiply-adds: a training example costs a forward and a backward pass
  # (about 3 forwards), a test example one forward.
  train_examples = sum(t.num_train // config.batch_size * config.batch_size
                       * config.epochs_for(i) for i, t in enumerate(tasks))
  test_examples = sum(len(t.test_index) for t in tasks) * (num_tasks + 1) / 2
  floor = test_examples / (test_examples + 3 * train_examples)
  print(f'wall {wall:.1f} s, evaluation {sum(evaluation):.1f} s: '
        f'{sum(evaluation) / wall:.1%} of the wall time; evaluation is '
        f'{floor:.1%} of the arithmetic')

SWEEP_RATES = (1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 2e-2)


def torch_reference_runner(tasks, config, hidden, learning_rate):
  """CLASSP as the reference code runs it: a PyTorch MLP, one Python step per
  batch (power 2, threshold 0, decayed steps), the batches gathered on the
  host in the same order as the toolkit's."""
  def run():
    torch.manual_seed(0)
    sizes = [int(np.prod(tasks[0].dataset.x_train.shape[1:])), *hidden,
             tasks[0].num_outputs]
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
      layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    net = torch.nn.Sequential(torch.nn.Flatten(), *layers[:-1])
    grad_sums = [torch.zeros_like(p) for p in net.parameters()]
    for t, task in enumerate(tasks):
      x, y = (torch.from_numpy(np.asarray(a))
              for a in task.train_batch(np.arange(task.num_train)))
      mask = torch.from_numpy(task.logit_mask())
      for rows in task_order(config, t, task.num_train):
        rows = torch.from_numpy(rows.astype(np.int64))
        logits = net(x[rows]).masked_fill(~mask, -1e9)
        loss = torch.nn.functional.cross_entropy(logits, y[rows].long())
        net.zero_grad()
        loss.backward()
        with torch.no_grad():
          for p, grad_sum in zip(net.parameters(), grad_sums, strict=True):
            grad_sum.add_(p.grad * p.grad)
            p.sub_(learning_rate * p.grad / (1e-5 + grad_sum).sqrt())

  return run


def part_d(data_dir, repeats):
  print(f'\n(d) training examples per second: a sweep of {len(SWEEP_RATES)} '
        'CLASSP learning rates in one vmapped program vs the same runs one '
        f'after another (median of {repeats}, interleaved; 5 tasks, 1 epoch '
        'each)')
  print(f'{len(jax.devices())} device(s) for the sweep; the sequential runs '
        'and "sweep, 1 device" on one')
  print(f'{"stream":12} {"model":16} {"batch":>5} {"sweep ex/s":>11} '
        f'{"1 device":>9} {"sequential":>11} {"torch":>9} {"sweep/seq":>9} '
        f'{"1 dev/seq":>9} {"sweep/torch":>11}')
  cases = [('split digits', lambda: datasets.load_digits(seed=0), (128, 128),
            16)]
  with contextlib.suppress(FileNotFoundError):
    mnist = datasets.load_idx_dataset('mnist', data_dir)
    cases.append(('split MNIST', lambda: mnist, (256, 256), 32))
  for stream_name, dataset, hidden, batch_size in cases:
    tasks = streams.split(dataset(), scenario='task')
    config = TrainConfig(epochs=1, batch_size=batch_size)
    image_shape = tasks[0].dataset.x_train.shape[1:]
    make_model = functools.partial(
        models.make_model, 'mlp', image_shape, tasks[0].num_outputs, seed=0,
        hidden=hidden)
    runs = [Run(make_model, tasks, make_method(
        'classp', learning_rate=rate, power=2.0, decay_from_task=0), config)
        for rate in SWEEP_RATES]
    runners = dict(
        sweep=lambda runs=runs: engine.train(
            runs, mesh=placement.mesh_for(len(runs))),
        one_device=lambda runs=runs: engine.train(runs, mesh=placement.mesh_for(
            len(runs), jax.devices()[:1])),
        sequential=lambda runs=runs: [engine.train(r) for r in runs])
    one_run = batch_size * sum(
        config.steps_for(t, task.num_train) for t, task in enumerate(tasks))
    examples = dict(sweep=len(runs) * one_run, one_device=len(runs) * one_run,
                    sequential=len(runs) * one_run)
    if torch is not None:  # one run of the six: it is slow, and as fast
      runners['torch'] = torch_reference_runner(tasks, config, hidden, 1e-2)
      examples['torch'] = one_run
    for run in runners.values():
      run()  # compile
    rates = {key: [] for key in runners}
    for _ in range(repeats):
      for key, run in runners.items():
        start = time.perf_counter()
        run()
        rates[key].append(examples[key] / (time.perf_counter() - start))
    median = {key: statistics.median(values) for key, values in rates.items()}
    def ratio(key, baseline, rates=rates):
      return statistics.median(
          a / b for a, b in zip(rates[key], rates[baseline], strict=True))

    over_sequential = ratio('sweep', 'sequential')
    over_torch = ratio('sweep', 'torch') if torch is not None else None
    print(f'{stream_name:12} {"MLP " + "-".join(map(str, hidden)):16} '
          f'{batch_size:5d} {median["sweep"]:11,.0f} '
          f'{median["one_device"]:9,.0f} {median["sequential"]:11,.0f} '
          + (f'{median["torch"]:9,.0f} ' if torch else f'{"absent":>9} ')
          + f'{over_sequential:9.2f} '
          + f'{ratio("one_device", "sequential"):9.2f} '
          + (f'{over_torch:11.2f}' if torch else f'{"skipped":>11}'),
          flush=True)


def _at_least_one(text: str) -> int:
  """An argparse type: an integer >= 1 (argparse names the option)."""
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value < 1:
    raise argparse.ArgumentTypeError(f'must be an integer >= 1, got {text!r}')
  return value


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data-dir', default=None,
                      help=f'default: ${datasets.DATA_DIR_ENV}')
  parser.add_argument('--part', choices=['a', 'b', 'c', 'd'], nargs='+',
                      default=['a', 'b', 'c', 'd'])
  parser.add_argument('--batch-sizes', type=_at_least_one, nargs='+',
                      default=[32, 128, 500])
  parser.add_argument('--repeats', type=_at_least_one, default=5)
  parser.add_argument('--models', choices=['mlp', 'cnn'], nargs='+',
                      default=['mlp', 'cnn'])
  parser.add_argument('--mlp-steps', type=_at_least_one, default=2000,
                      help='steps at every batch size')
  parser.add_argument('--cnn-examples', type=_at_least_one, default=6400,
                      help='examples (steps x batch size, at least 10 steps)')
  parser.add_argument('--tasks', type=_at_least_one, default=20)
  parser.add_argument('--cpu-devices', type=_at_least_one,
                      default=os.cpu_count(),
                      help='on a CPU, devices to split the host into (part d '
                           'sweeps over them; every other part uses one); '
                           'default: one per core')
  args = parser.parse_args()
  # Before JAX starts its CPU backend (the first call that needs a device).
  jax.config.update('jax_num_cpu_devices', args.cpu_devices)
  print(f'{platform.node()}: {jax.devices()[0].device_kind}, '
        f'{len(jax.devices())} device(s), jax {jax.__version__}')
  if 'a' in args.part:
    dataset = datasets.load_idx_dataset('mnist', args.data_dir)
    part_a(dataset, args.models, args.batch_sizes, args.repeats,
           dict(mlp=lambda batch_size: args.mlp_steps,
                cnn=lambda batch_size: max(10, args.cnn_examples // batch_size)))
  if 'b' in args.part:
    part_b()
  if 'c' in args.part:
    part_c(args.data_dir, args.tasks)
  if 'd' in args.part:
    part_d(args.data_dir, args.repeats)


if __name__ == '__main__':
  main()
