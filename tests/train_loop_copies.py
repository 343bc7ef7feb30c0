"""Prints, as JSON, how many while loops of the compiled CPU train step of a
DER++ run hold its buffer, and how many of them copy it; run as a process
of its own, at XLA's default flags (the suite's conftest.py sets others)."""

import json
import re

from classp_optax.continual import engine
from classp_optax.continual import make_method
from classp_optax.continual import steps
from tests.test_rehearsal import CONFIG
from tests.test_rehearsal import digits
from tests.test_rehearsal import mlp

BUFFER = r'f32\[(1,)?200,8,8,1\]'  # the 200 stored digits, 8 x 8 x 1


def loop_bodies(hlo: str) -> list[str]:
  """The text of the body of each while loop in ``hlo``."""
  return [re.search(rf'\n%?{re.escape(body)} .*?\n}}', hlo, re.S).group(0)
          for body in re.findall(r'while\(.*?body=%?([\w.-]+)', hlo)]


def main() -> None:
  calls = []
  train_steps = steps.train_steps
  steps.train_steps = lambda *args, **kwargs: calls.append(
      (args, kwargs)) or train_steps(*args, **kwargs)
  engine.train(engine.Run(mlp(), digits(tasks=1), make_method('derpp'),
                          CONFIG))
  args, kwargs = calls[0]
  hlo = steps.train_program().lower(*args, **kwargs).compile().as_text()
  loops = [body for body in loop_bodies(hlo) if re.search(BUFFER, body)]
  print(json.dumps(dict(holding=len(loops), copying=sum(
      bool(re.search(BUFFER + r'\S* copy\(', body)) for body in loops))))


if __name__ == '__main__':
  main()
