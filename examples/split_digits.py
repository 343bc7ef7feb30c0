"""Split digits: five 2-class tasks from scikit-learn's digits, per-task heads.

    python examples/split_digits.py

Runs in seconds on a laptop CPU; no data to download.
"""

from flax import nnx

from classp_optax.continual import Run
from classp_optax.continual import TrainConfig
from classp_optax.continual import make_method
from classp_optax.continual import train
from classp_optax.continual.datasets import load_digits
from classp_optax.continual.models import MLP
from classp_optax.continual.streams import split

tasks = split(load_digits(), scenario='task')
config = TrainConfig(epochs=5, batch_size=16)

for method in [
    # Plain steps with a threshold on task 1, decayed steps afterwards.
    make_method('classp', learning_rate=0.05, threshold=1e-4),
    make_method('ewc', learning_rate=0.03, strength=10.0),
    make_method('sgd', learning_rate=0.1),
]:
  result = train(Run(
      lambda: MLP(64, (128, 128), 10, rngs=nnx.Rngs(0)), tasks, method, config))
  summary = ', '.join(f'{k} {v:.3f}' for k, v in result.summary.items())
  print(f'{method.name:7} {summary}')
  print(result.accuracy.round(3))
