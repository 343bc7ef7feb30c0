"""benchmarks/mammoth_map.py: their code's runs are read from its own log
lines, kept as each ends and reused, tabled beside ours, and a run that
printed nan or did not learn its first task never reads as a number."""

import json
import math
import pathlib
import sys
import textwrap

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / 'benchmarks'))
import mammoth_map  # noqa: E402

# Their utils/main.py, faked: it prints what theirs prints on stderr (the
# mean accuracy after each task), the model's final mean shifted by the
# seed so that seeds differ, and it counts its runs.
FAKE_MAIN = textwrap.dedent('''\
    import pathlib, sys
    args = sys.argv[1:]
    model, seed = args[args.index('--model') + 1], int(args[-1])
    with open('calls', 'a') as calls:
      calls.write(' '.join(args) + chr(10))
    final = {'sgd': 19.5, 'lwf': 'nan'}.get(model, 80.0 + seed)
    if args[args.index('--dataset') + 1] == 'seq-mnist':
      for t, (c, k) in enumerate([(99.9, 99.9), (60.0, 98.0),
                                  (final, 97.5)], 1):
        print(f'Accuracy for {t} task(s): \\t [Class-IL]: {c} % '
              f'\\t [Task-IL]: {k} %', file=sys.stderr)
    else:
      for t, a in enumerate([92.0, final], 1):
        print(f'Accuracy for {t} task(s): {a} %', file=sys.stderr)
''')


@pytest.fixture
def theirs(tmp_path, monkeypatch):
  """A fake checkout, run from a project folder of its own."""
  checkout = tmp_path / 'mammoth'
  (checkout / 'utils').mkdir(parents=True)
  (checkout / 'utils' / 'main.py').write_text(FAKE_MAIN)
  monkeypatch.chdir(tmp_path)
  return checkout


def row_of(lines, cell, label):
  """The table's row of ``label`` in ``cell``."""
  return next(r for r in lines if r.startswith(f'| {cell} | {label} |'))


PERMUTED = 'permuted-mnist-der-domain'


def run(checkout, *extra):
  return mammoth_map.main(['--mammoth', str(checkout), '--mammoth-python',
                           sys.executable, *extra])


def test_their_log_lines_are_read_by_setting():
  log = ('Accuracy for 1 task(s): \t [Class-IL]: 99.5 % \t [Task-IL]: 99.5 %'
         '\nAccuracy for 2 task(s): \t [Class-IL]: nan % \t [Task-IL]: 97.25'
         ' %\n')
  got = mammoth_map.parsed(log)
  assert got['class_il'][0] == 99.5 and math.isnan(got['class_il'][1])
  assert got['task_il'] == [99.5, 97.25]
  assert mammoth_map.parsed('Accuracy for 1 task(s): 91.2 %\n'
                            'Accuracy for 2 task(s): 85.0 %') == dict(
                                domain_il=[91.2, 85.0])


def test_each_run_is_their_command_at_their_best_settings(theirs):
  assert run(theirs, '--datasets', 'seq-mnist', '--seeds', '0') == 0
  calls = (theirs / 'calls').read_text().splitlines()
  assert calls[0] == ('--dataset seq-mnist --model sgd --load_best_args '
                      '--seed 0')
  assert ('--dataset seq-mnist --model derpp --buffer_size 500 '
          '--load_best_args --seed 0') in calls
  assert len(calls) == 10  # sgd, lwf; er, der, derpp, agem at 200 and 500
  kept = json.loads(pathlib.Path(
      'docs/results/mammoth-map/seq-mnist-seed0.json').read_text())
  assert kept['er:500']['class_il'] == [99.9, 60.0, 80.0]


def test_finished_runs_are_reused_and_tabled_over_seeds(theirs, capsys):
  run(theirs, '--datasets', 'perm-mnist', '--seeds', '0,1')
  calls = (theirs / 'calls').read_text().splitlines()
  run(theirs, '--datasets', 'perm-mnist', '--seeds', '0,1')
  assert (theirs / 'calls').read_text().splitlines() == calls
  rows = capsys.readouterr().out.splitlines()
  der = row_of(rows, PERMUTED, 'der')
  assert '| 80.50 ± 0.50 (2) |' in der  # 80 and 81, the seeds' finals


def test_a_run_that_printed_nan_is_no_result(theirs, capsys):
  run(theirs, '--datasets', 'seq-mnist', '--seeds', '0')
  rows = capsys.readouterr().out.splitlines()
  lwf = row_of(rows, 'split-mnist-der-class', 'lwf')
  assert 'no result (seed 0: printed nan)' in lwf


def test_a_first_task_at_chance_is_no_result():
  runs = {0: dict(domain_il=[13.0, 60.0])}
  assert mammoth_map.theirs_cell(runs, 'domain_il', 10.0)[0] == (
      'no result (seed 0: first task not learnt)')
  assert mammoth_map.theirs_cell({0: dict(domain_il=[])}, 'domain_il',
                                 10.0)[0] == 'no result (seed 0: printed no accuracy)'
  runs[0]['domain_il'][0] = 15.5
  assert mammoth_map.theirs_cell(runs, 'domain_il', 10.0) == (
      '60.00 (1)', [60.0])


def test_ours_beside_theirs_with_the_difference_in_standard_errors(
    theirs, capsys):
  folder = pathlib.Path('docs/results/rehearsal-map')
  folder.mkdir(parents=True)
  for seed, accuracy in enumerate([0.78, 0.80]):
    row = dict(average_accuracy=accuracy, diverged=None, not_learnt=[])
    (folder / f'permuted-mnist-der-domain-seed{seed}.json').write_text(
        json.dumps(dict(results={'er': row})))
  run(theirs, '--datasets', 'perm-mnist', '--seeds', '0,1')
  er = row_of(capsys.readouterr().out.splitlines(), PERMUTED, 'er')
  # ours 79 ± 1, theirs 80.5 ± 0.5: -1.5 points, SE sqrt(2/2 + 0.5/2)
  assert er == ('| permuted-mnist-der-domain | er | 79.00 ± 1.00 (2) | '
                '80.50 ± 0.50 (2) | -1.50 (-1.3 SE) |')


def test_an_unknown_dataset_or_a_missing_checkout_is_refused(capsys):
  with pytest.raises(SystemExit):
    mammoth_map.main(['--datasets', 'seq-cifar10', '--no-run'])
  assert "--datasets must be among ['perm-mnist'" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    mammoth_map.main(['--datasets', 'seq-mnist'])
  assert '--mammoth and --mammoth-python are needed' in (
      capsys.readouterr().err)
  with pytest.raises(SystemExit):
    mammoth_map.main(['--threads', '0', '--no-run'])
  assert '--threads must be an integer >= 1, got 0' in capsys.readouterr().err
  with pytest.raises(SystemExit):
    mammoth_map.main(['--seeds', '1-3', '--no-run'])
  assert '--seeds takes distinct integers >= 0' in capsys.readouterr().err


def test_some_rows_run_alone_for_more_seeds_and_join_the_table(theirs,
                                                               capsys):
  run(theirs, '--datasets', 'perm-mnist', '--seeds', '0')
  capsys.readouterr()
  run(theirs, '--datasets', 'perm-mnist', '--seeds', '1,2', '--methods',
      'agem,er:500')
  calls = (theirs / 'calls').read_text().splitlines()
  assert len(calls) == 9 + 4  # seed 0's nine rows, then two rows of two
  rows = capsys.readouterr().out.splitlines()
  assert '| 81.00 ± 0.82 (3) |' in row_of(rows, PERMUTED, 'agem')
  assert '| 80.00 (1) |' in row_of(rows, PERMUTED, 'der')
  with pytest.raises(SystemExit):
    run(theirs, '--methods', 'er_ace')
  assert "--methods must be among ['agem'" in capsys.readouterr().err


def test_running_one_dataset_keeps_the_others_in_the_table_and_record(
    theirs, capsys):
  run(theirs, '--datasets', 'seq-mnist', '--seeds', '0')
  run(theirs, '--datasets', 'perm-mnist', '--seeds', '0')
  record = json.loads(pathlib.Path('docs/results/mammoth-map.json')
                      .read_text())
  assert record['split-mnist-der-class']['er']['theirs'] == '80.00 (1)'
  assert record['permuted-mnist-der-domain']['er']['theirs'] == '80.00 (1)'
  mammoth_map.main(['--datasets', 'rot-mnist', '--no-run'])
  out = capsys.readouterr().out
  assert '| split-mnist-der-task | er |' in out
  assert json.loads(pathlib.Path('docs/results/mammoth-map.json')
                    .read_text()) == record
