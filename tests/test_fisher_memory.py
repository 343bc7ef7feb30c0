"""``benchmarks/fisher_memory.py`` refuses a bad ``--heads`` before it
starts a worker, naming the argument and the sizes it accepts."""

import pathlib
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / 'benchmarks'))
import fisher_memory  # noqa: E402


@pytest.mark.parametrize('heads', ['0', '10,x', '', '101', '10,-1'])
def test_a_bad_head_list_is_refused_naming_the_accepted_sizes(
    heads, capsys, monkeypatch):
  started = []
  monkeypatch.setattr(subprocess, 'run', lambda *a, **k: started.append(a))
  with pytest.raises(SystemExit) as refused:
    fisher_memory.main(['--outputs', '100', '--heads', heads])
  assert refused.value.code == 2
  err = capsys.readouterr().err
  assert 'argument --heads' in err and 'from 1 to 100' in err, err
  assert not started


def test_heads_split_the_outputs_into_groups_of_that_size():
  masks = fisher_memory.heads(5, 2)
  assert masks.tolist() == [[True, True, False, False, False],
                            [True, True, False, False, False],
                            [False, False, True, True, False],
                            [False, False, True, True, False],
                            [False, False, False, False, True]]
