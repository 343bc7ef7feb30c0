"""One of two processes of a data-parallel run on localhost (test_multiprocess).

    python tests/multiprocess_worker.py PROCESS_ID PORT

Each process has 2 CPU devices; with gloo collectives the two form one mesh of
4 devices, and the unchanged engine trains on it. Prints the accuracy matrix.
"""

import json
import os
import sys


def main(process_id: int, port: str) -> None:
  os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
  os.environ['JAX_PLATFORMS'] = 'cpu'
  import jax  # noqa: PLC0415 (after the flags above)

  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(f'127.0.0.1:{port}', num_processes=2,
                             process_id=process_id)
  from jax.sharding import Mesh  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  from tests.test_multiprocess import run  # noqa: PLC0415

  result = run(Mesh(np.array(jax.devices()), ('data',)))
  print('RESULT ' + json.dumps(dict(devices=jax.device_count(),
                                    accuracy=result.accuracy.tolist())))


if __name__ == '__main__':
  main(int(sys.argv[1]), sys.argv[2])
