"""Two processes on localhost, joined by jax.distributed with CPU collectives,
train one data-parallel model and get the single-device accuracy matrix."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

from classp_optax.continual import engine
from classp_optax.continual import methods
from classp_optax.continual import models
from classp_optax.continual import streams
from classp_optax.continual.config import TrainConfig
from classp_optax.continual.datasets import load_digits

ROOT = pathlib.Path(__file__).parent.parent


def run(mesh=None):
  tasks = streams.split(load_digits(), scenario='task')[:2]
  config = TrainConfig(epochs=1, batch_size=16, eval_batch_size=128, seed=3)
  return engine.train(
    engine.Run(
      lambda: models.make_model('mlp', (8, 8, 1), 10, seed=0, hidden=(32,)),
      tasks,
      methods.make_method('classp', learning_rate=0.05, threshold=1e-4),
      config,
    ),
    mesh=mesh,
  )


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_match_one_device():
  port = str(free_port())
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  workers = [
    subprocess.Popen(
      [sys.executable, str(ROOT / 'tests/multiprocess_worker.py'), str(i), port],
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
      env=env,
      cwd=ROOT,
    )
    for i in range(2)
  ]
  outputs = []
  for worker in workers:
    out, _ = worker.communicate(timeout=300)
    assert worker.returncode == 0, out[-3000:]
    outputs.append(json.loads(out.split('RESULT ')[-1]))
  want = run().accuracy
  for got in outputs:
    assert got['devices'] == 4
    np.testing.assert_allclose(got['accuracy'], want, atol=1 / 90)
  np.testing.assert_array_equal(outputs[0]['accuracy'], outputs[1]['accuracy'])
