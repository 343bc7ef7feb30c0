"""Every benchmark script that takes ``--seeds`` refuses a bad list with
the accepted form, as the CLI does, before it trains or reads anything."""

import importlib
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / 'benchmarks'))

# Each script, with the arguments that would otherwise make it train nothing.
SCRIPTS = {'fisher_study': ['--no-run'], 'fisher_ablation': ['--no-run'],
           'standard_map': ['--no-run'], 'rehearsal_map': ['--no-run'],
           'mammoth_map': ['--no-run'], 'continual_results': ['--list']}


@pytest.mark.parametrize('script', SCRIPTS)
@pytest.mark.parametrize('seeds', ['1-3', '0,0', '-1', ''])
def test_a_bad_seed_list_is_refused_naming_the_accepted_form(
    script, seeds, capsys, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # nothing to read or write here
  main = importlib.import_module(script).main
  with pytest.raises(SystemExit) as refused:
    main(['--seeds', seeds, *SCRIPTS[script]])
  assert refused.value.code == 2
  err = capsys.readouterr().err
  assert 'argument --seeds' in err and 'distinct integers >= 0' in err
  assert 'Traceback' not in err and not list(tmp_path.iterdir())
