"""benchmarks/rehearsal_map.py: some cells' rows run alone for more seeds,
and the table counts every seed whose summary is kept."""

import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / 'benchmarks'))
import rehearsal_map  # noqa: E402


def keep(cell: str, seed: int, **accuracies):
  path = rehearsal_map.FOLDER / f'{cell}-seed{seed}.json'
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(dict(results={
      label: dict(average_accuracy=a, diverged=None, not_learnt=[])
      for label, a in accuracies.items()})))


@pytest.fixture
def runs(tmp_path, monkeypatch):
  """The commands the map would run, each kept as a summary of 0.5."""
  monkeypatch.chdir(tmp_path)
  calls = []

  def run_and_summarise(argv, out):
    calls.append(argv)
    labels = argv[argv.index('--methods') + 1].split(',')
    return dict(command=' '.join(argv), results={
        label: dict(average_accuracy=0.5, diverged=None, not_learnt=[])
        for label in labels})

  monkeypatch.setattr(rehearsal_map, 'run_and_summarise', run_and_summarise)
  return calls


def test_some_rows_of_one_cell_run_alone_and_join_the_kept_seeds(runs,
                                                                  capsys):
  for seed in (0, 1):
    keep('split-mnist-der-class', seed, agem=0.3, sgd=0.2)
  rehearsal_map.main(['--seeds', '2', '--cells', 'split-mnist-der-class',
                      '--methods', 'agem,er:500'])
  assert runs == [['--benchmark', 'split-mnist-der', '--methods',
                   'agem,er:500', '--seed', '2', '--scenario', 'class']]
  rows = capsys.readouterr().out.splitlines()
  agem = next(r for r in rows if r.startswith('| agem |'))
  assert agem.split(' | ')[1] == '36.67 ± 9.43 (3)'  # 30, 30, 50
  sgd = next(r for r in rows if r.startswith('| sgd |'))
  assert sgd.split(' | ')[1] == '20.00 ± 0.00 (2)'


def test_rows_a_kept_seed_lacks_run_and_join_its_summary(runs):
  keep('split-mnist-der-class', 10, agem=0.3)
  args = ['--seeds', '10', '--cells', 'split-mnist-der-class']
  rehearsal_map.main([*args, '--methods', 'agem,agem:500', '--no-run'])
  assert runs == []  # --no-run trains nothing
  rehearsal_map.main([*args, '--methods', 'agem,agem:500'])
  assert [argv[argv.index('--methods') + 1] for argv in runs] == ['agem:500']
  kept = json.loads((rehearsal_map.FOLDER / 'split-mnist-der-class-seed10'
                     '.json').read_text())
  assert {k: r['average_accuracy'] for k, r in kept['results'].items()} == {
      'agem': 0.3, 'agem:500': 0.5}
  assert '--methods agem:500' in kept['commands']['agem:500']
  rehearsal_map.main([*args, '--methods', 'agem,agem:500'])
  assert len(runs) == 1  # nothing left to run


def test_a_cell_of_no_such_name_is_refused(runs, capsys):
  with pytest.raises(SystemExit):
    rehearsal_map.main(['--cells', 'split-mnist-der-domain', '--no-run'])
  assert "--cells must be among ['split-mnist-der-class'" in (
      capsys.readouterr().err)
  assert runs == []


def test_a_cell_with_none_of_the_rows_asked_runs_nothing(runs):
  rehearsal_map.main(['--seeds', '0', '--methods', 'lwf'])
  assert [argv[argv.index('--methods') + 1] for argv in runs] == ['lwf',
                                                                  'lwf']
  assert all(argv[1] == 'split-mnist-der' for argv in runs)


@pytest.mark.parametrize('flag, value, says', [
    ('--methods', 'er_ace:200', "--methods must be among ['sgd'"),
    ('--seeds', '0,x', '--seeds takes distinct integers >= 0'),
])
def test_a_bad_row_or_seed_list_is_refused(runs, capsys, flag, value, says):
  with pytest.raises(SystemExit):
    rehearsal_map.main([flag, value, '--no-run'])
  assert says in capsys.readouterr().err
  assert runs == []
