"""One ``classp-continual`` run per output folder, run once and then reused."""

import json
import pathlib

from classp_optax.continual import cli


def run_once(argv: list[str], out: pathlib.Path, progress: bool = True) -> dict:
  """Runs ``classp-continual argv`` into ``out`` unless its ``results.json``
  exists (resuming from its checkpoints otherwise); returns that JSON."""
  done = out / 'results.json'
  if not done.exists():
    argv = [*argv, '--out', str(out), '--resume',
            *([] if progress else ['--no-progress'])]
    print('+ classp-continual ' + ' '.join(argv), flush=True)
    if cli.main(argv) != 0:
      raise SystemExit(1)
  return json.loads(done.read_text())
