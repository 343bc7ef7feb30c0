"""The CLASSP paper's vision protocol: MNIST, then Fashion-MNIST.

    python examples/mnist_then_fashion.py --data-dir ../shared/data

Four epochs of MNIST then one of Fashion-MNIST, the paper's CNN, batch 32.
CLASSP takes plain steps with threshold 0.5 on MNIST, then decayed steps with
threshold 0; EWC anchors MNIST with its Fisher; SGD is the baseline. On two
CPU cores a method takes several minutes; pass --epochs 1,1 for a quick look.

These are the paper's settings as written, and two of them fail here
(docs/results.md, part 2.2): threshold 0.5 applied per weight stops CLASSP
from learning MNIST (the reference code's tensor-level test never applied
it), and EWC's strength 5000 diverges with a per-example Fisher: the loop
stops it and says where. Threshold 0 on MNIST, and a strength with
lr x strength x max Fisher below 2 (64 for the CNN), are the settings that
reproduce the paper's claim.
"""

import argparse

from classp_optax.continual import Run
from classp_optax.continual import TrainConfig
from classp_optax.continual import make_method
from classp_optax.continual import train
from classp_optax.continual.datasets import load_idx_dataset
from classp_optax.continual.models import make_model
from classp_optax.continual.streams import sequence

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument('--data-dir', help='default: $CLASSP_DATA_DIR')
parser.add_argument('--epochs', default='4,1')
parser.add_argument('--seed', type=int, default=0)
args = parser.parse_args()

tasks = sequence(load_idx_dataset('mnist', args.data_dir),
                 load_idx_dataset('fashion-mnist', args.data_dir))
image_shape = tasks[0].dataset.x_train.shape[1:]  # (28, 28, 1)
config = TrainConfig(epochs=tuple(int(e) for e in args.epochs.split(',')),
                     batch_size=32, seed=args.seed)

print(f'{"method":7} {"MNIST":>6} {"Fashion":>8} {"state bytes":>12}')
for method in [
    make_method('classp', learning_rate=0.2, threshold=0.5, power=1.0,
                eps=1e-5, decay_from_task=1, later_threshold=0.0),
    make_method('ewc', learning_rate=0.25, strength=5000.0),
    make_method('sgd', learning_rate=0.25),
]:
  result = train(Run(
      lambda: make_model('cnn', image_shape, 10, args.seed), tasks, method,
      config), progress=True)
  if result.diverged:
    print(f'{method.name:7} diverged in task {result.diverged["task"]} at '
          f'step {result.diverged["step"]}')
    continue
  mnist_acc, fashion_acc = result.accuracy[-1]
  print(f'{method.name:7} {mnist_acc:6.3f} {fashion_acc:8.3f} '
        f'{result.state_bytes:12,d}')
