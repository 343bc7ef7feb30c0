"""benchmarks/vdv_code_pairs.py: the digit pairs are those van de Ven &
Tolias's data.py makes for a seed, and a run that is no result never reads
as a number."""

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / 'benchmarks'))
import vdv_code_pairs  # noqa: E402


def test_their_pairs_are_the_labels_their_code_gives_each_task():
  """Their code relabels digit y as perm[y] and gives task t the labels 2t
  and 2t + 1, after np.random.seed(seed)."""
  for seed in (1, 7, 20):
    np.random.seed(seed)  # noqa: NPY002 (their code's calls, as they are)
    perm = np.random.permutation(list(range(10)))  # noqa: NPY002
    pairs = vdv_code_pairs.their_pairs(seed)
    assert sorted(d for pair in pairs for d in pair) == list(range(10))
    for t, pair in enumerate(pairs):
      assert {int(perm[d]) for d in pair} == {2 * t, 2 * t + 1}


def test_the_mean_and_its_standard_error_in_percent():
  assert vdv_code_pairs.mean_sem([0.8, 0.9, 1.0]) == '90.00 ± 5.77'


def test_a_run_that_left_a_task_unlearnt_is_no_number(monkeypatch):
  run = dict(average_accuracy=0.5, not_learnt=[2], diverged=None)
  monkeypatch.setattr(vdv_code_pairs, 'run_once',
                      lambda argv, out, progress: dict(results=[run]))
  with pytest.raises(SystemExit, match='seed 3: ours is no result: tasks 2'):
    vdv_code_pairs.ours(3, 'data', 'out')
  run['not_learnt'] = []
  assert vdv_code_pairs.ours(3, 'data', 'out') == 0.5


def test_seeds_are_a_range_and_anything_else_is_refused(capsys):
  assert vdv_code_pairs.seed_range('1-20') == range(1, 21)
  for bad in ('20-1', '1', 'a-b', '-3-4'):
    with pytest.raises(SystemExit):
      vdv_code_pairs.main(['--data-dir', 'd', f'--seeds={bad}'])
    assert 'first-last, integers 0 <= first <= last' in capsys.readouterr().err
