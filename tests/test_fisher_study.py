"""benchmarks/fisher_study.py: each variant is the preset's EWC or online
EWC with one kind of Fisher, the command is one the CLI accepts, and a run
that is no result never reads as a number."""

import pathlib
import sys

from classp_optax.continual import cli
from classp_optax.continual import make_method

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / 'benchmarks'))
import fisher_study  # noqa: E402


def test_each_variant_is_the_presets_penalty_with_one_kind(tmp_path):
  argv = fisher_study.command('permuted-mnist-vdv', 'class', 1, None, 1000)
  plan = cli.plan_runs(cli.build_parser().parse_args(
      [*argv, '--out', str(tmp_path)]))
  for name, preset in fisher_study.PENALTIES.items():
    want = make_method(preset, benchmark='permuted-mnist-vdv',
                       scenario='class').hyperparams
    for kind in fisher_study.KINDS:
      got = plan.runs[f'ewc:{name}-{kind}'][0].method.hyperparams
      assert got == {**want, 'fisher': kind, 'fisher_samples': 1000}
      assert plan.runs[f'ewc:{name}-{kind}'][0].seed == 1


def test_a_seed_that_diverged_gives_no_number():
  run = dict(average_accuracy=0.5, not_learnt=[], diverged=None)
  assert fisher_study.seeds_cell({0: run, 1: dict(run, average_accuracy=0.7)}) == (
      '60.00 ± 10.00 (2)')
  diverged = dict(run, average_accuracy=None,
                  diverged=dict(task=2, step=5, what='the loss'))
  assert fisher_study.seeds_cell({0: run, 1: diverged}).startswith('diverged (seed 1')
