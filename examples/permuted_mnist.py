"""Permuted MNIST: the same digits under fixed pixel permutations.

    python examples/permuted_mnist.py --data-dir ../shared/data --tasks 5

Task 0 is the identity; one optimizer state is carried across all tasks.
"""

import argparse

from classp_optax.continual import Run
from classp_optax.continual import TrainConfig
from classp_optax.continual import make_method
from classp_optax.continual import train
from classp_optax.continual.datasets import load_idx_dataset
from classp_optax.continual.models import make_model
from classp_optax.continual.streams import permuted

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument('--data-dir', help='default: $CLASSP_DATA_DIR')
parser.add_argument('--tasks', type=int, default=5)
parser.add_argument('--seed', type=int, default=0)
args = parser.parse_args()

mnist = load_idx_dataset('mnist', args.data_dir)
tasks = permuted(mnist, args.tasks, seed=args.seed)
image_shape = mnist.x_train.shape[1:]  # (28, 28, 1)
config = TrainConfig(epochs=1, batch_size=500, seed=args.seed)

for method in [
    make_method('classp', learning_rate=3e-4, threshold=1e-5, power=2.0,
                eps=1e-5, decay_from_task=0, later_threshold=None),
    make_method('adam', learning_rate=3e-4),
]:
  result = train(Run(
      lambda: make_model('mlp', image_shape, 10, args.seed), tasks, method,
      config), progress=True)
  s = result.summary
  print(f'{method.name:7} average {s["average_accuracy"]:.3f}  forgetting '
        f'{s["forgetting"]:.3f}  learning {s["learning_accuracy"]:.3f}')
