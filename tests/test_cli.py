"""The classp-continual command, end to end on the embedded digits."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from classp_optax.continual import cli
from classp_optax.continual import compile_cache
from classp_optax.continual import datasets
from classp_optax.continual import methods
from classp_optax.continual import suites
from classp_optax.continual.datasets import load_digits
from classp_optax.continual.suites import SUITES
from tests.subprocess_env import xla_flags_without


def test_default_benchmark_writes_table_json_and_png(tmp_path, capsys):
  assert cli.main(['--methods', 'classp,ewc,si', '--epochs', '1', '--out',
                   str(tmp_path), '--no-progress', '--tasks', '3',
                   '--set', 'ewc.mode=online', '--set', 'ewc.decay=0.9']) == 0
  out = capsys.readouterr().out
  assert 'permuted-digits' in out and 'forgetting' in out and 'BWT' in out
  rows = [line.split() for line in out.splitlines()
          if line.startswith(('classp ', 'ewc ', 'si '))]
  assert [r[0] for r in rows] == ['classp', 'ewc', 'si']
  saved = json.loads((tmp_path / 'results.json').read_text())
  assert saved['benchmark'] == 'permuted-digits'
  by_method = {r['method']: r for r in saved['results']}
  assert by_method['ewc']['hyperparams']['mode'] == 'online'
  for r in saved['results']:
    assert len(r['accuracy']) == 3 and len(r['accuracy'][0]) == 3
    assert 0 <= r['average_accuracy'] <= 1
  # The printed table shows what the JSON holds.
  assert float(rows[0][1]) == pytest.approx(
      by_method['classp']['average_accuracy'], abs=5e-4)
  png = (tmp_path / 'accuracy.png').read_bytes()
  assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10_000


@pytest.mark.parametrize('argv,message', [
    (['--methods', 'nope'], 'method must be one of'),
    (['--set', 'classp.lr'], 'METHOD.NAME=VALUE'),
    (['--set', 'classp.threshold=-1'], 'threshold must be a real number'),
    (['--set', 'classp.momentum=0.9'], "classp has no setting 'momentum'"),
    (['--set', 'classp.treshold=0.1'],
     "classp has no setting 'treshold'. Did you mean classp.threshold?"),
    (['--methods', 'sgd', '--seeds', '0,1', '--set', 'sgd.lr=0.1'],
     "sgd has no setting 'lr'. Did you mean sgd.learning_rate?"),
    (['--methods', 'sgd', '--set', 'adam.learning_rate=1'], 'not in --methods'),
    (['--epochs', '0'], 'positive integers'),
    (['--epochs', '1,2'], '2 values for 5 tasks'),
    (['--benchmark', 'split-mnist', '--data-dir', '/nonexistent'], 'no train-images'),
    (['--batch-size', '0'], '--batch-size must be >= 1'),
    (['--seed', '-1'], '--seed must be >= 0'),
    (['--benchmark', 'split-digits', '--tasks', '3'],
     '--tasks applies to permuted benchmarks only'),
    (['--benchmark', 'permuted-digits', '--tasks', '0'], '--tasks must be >= 1'),
    (['--validation', '1.5'], r'--validation must be in (0, 1)'),
    (['--methods', 'sgd,sgd'], 'lists sgd more than once'),
    (['--methods', 'sgd:'], 'a method label takes'),
    (['--methods', 'sgd:a', '--set', 'sgd:b.learning_rate=1'], 'not in --methods'),
    (['--benchmark', 'mnist-fashion', '--scenario', 'class'],
     '--scenario applies to split and permuted benchmarks only'),
    (['--checkpoint-every', '0'], '--checkpoint-every must be >= 1'),
    (['--steps-per-task', '0'], '--steps-per-task must be >= 1'),
    (['--steps-per-task', '3', '--epochs', '2'], 'exclude each other'),
    (['--resume', '--overwrite'], 'exclude each other'),
    (['--methods', 'adam', '--set', 'adam.learning_rate=abc'],
     "adam.learning_rate must be a real number in (0.0, inf), got 'abc'"),
    (['--methods', 'adam', '--set', 'adam.learning_rate=-1'],
     'adam.learning_rate must be a real number in (0.0, inf), got -1'),
    (['--methods', 'sgd', '--set', 'sgd.momentum=-0.5'],
     'sgd.momentum must be a real number in [0.0, 1.0), got -0.5'),
    # Checked before the data: the folder does not exist.
    (['--benchmark', 'split-mnist', '--data-dir', '/nonexistent', '--methods',
      'ewc', '--set', 'ewc.decay=2'], 'ewc.decay must be a real number in'),
    (['--seeds', '0,x'], '--seeds takes distinct integers >= 0'),
    (['--seeds', '1,1'], '--seeds takes distinct integers >= 0'),
    (['--seeds', '-1'], '--seeds takes distinct integers >= 0'),
    (['--sweep', 'classp.learning_rate'], '--sweep takes METHOD.NAME=V1,V2'),
    (['--methods', 'sgd', '--sweep', 'adam.learning_rate=0.1,0.2'],
     '--sweep names methods not in --methods'),
    (['--sweep', 'classp.power=1,2'], '--sweep classp.power: a change of this setting'),
    (['--benchmark', 'split-mnist', '--data-dir', '/nonexistent', '--methods',
      'sgd', '--sweep', 'sgd.learning_rate=0.1,-1'],
     'sgd.learning_rate must be a real number in (0.0, inf), got -1'),
])
def test_bad_input_exits_2_with_a_clear_message(argv, message, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main([*argv, '--out', str(tmp_path), '--no-progress'])
  assert exit_info.value.code == 2
  assert message in capsys.readouterr().err



def _run(argv, out, capsys, epochs='1'):
  """The command on split digits (unless ``argv`` names a benchmark): its
  tasks are the shortest."""
  if '--benchmark' not in argv:
    argv = ['--benchmark', 'split-digits', *argv]
  epochs = ['--epochs', epochs] if epochs else []
  code = cli.main([*argv, '--out', str(out), '--no-progress', *epochs])
  return code, capsys.readouterr()


def test_a_sweep_gives_each_configuration_what_its_own_run_gives(
    tmp_path, capsys):
  """--seeds and --sweep: one row per configuration, the spread over seeds,
  and a row's accuracies those of the same configuration run alone (one row
  of each method, a swept value on a second seed; tests/test_sweep.py checks
  every configuration of every method through the API)."""
  code, captured = _run(['--methods', 'classp,sgd', '--seeds', '0,2',
                         '--sweep', 'classp.learning_rate=0.01,0.1'],
                        tmp_path / 'sweep', capsys)
  assert code == 0
  assert 'classp learning_rate=0.1 seed=2' in captured.out
  assert 'over seeds 0,2:' in captured.out
  saved = json.loads((tmp_path / 'sweep' / 'results.json').read_text())
  rows = {(r['method'], r['swept'].get('learning_rate'), r['swept']['seed']):
          r for r in saved['results']}
  assert len(rows) == 6
  for method, rate, seed in [('classp', 0.1, 2), ('sgd', None, 0)]:
    row = rows[method, rate, seed]
    sets = ['--set', f'classp.learning_rate={rate}'] if rate else []
    _run(['--methods', method, '--seed', str(seed), *sets],
         tmp_path / f'{method}-{rate}-{seed}', capsys)
    alone = json.loads((tmp_path / f'{method}-{rate}-{seed}' /
                        'results.json').read_text())['results'][0]
    np.testing.assert_allclose(row['accuracy'], alone['accuracy'], atol=1e-6)
    assert row['hyperparams'] == alone['hyperparams']
  assert sorted(p.name for p in (tmp_path / 'sweep' / 'checkpoints').iterdir()
                ) == ['classp', 'sgd']


def test_labelled_variants_have_their_own_settings_records_and_checkpoints(
    tmp_path, capsys):
  code, captured = _run(['--methods', 'sgd,sgd:fast', '--set',
                         'sgd:fast.learning_rate=0.3'], tmp_path, capsys)
  assert code == 0
  saved = json.loads((tmp_path / 'results.json').read_text())
  by_method = {r['method']: r for r in saved['results']}
  assert by_method['sgd']['hyperparams']['learning_rate'] == 0.03  # tuned
  assert by_method['sgd:fast']['hyperparams']['learning_rate'] == 0.3
  assert by_method['sgd']['accuracy'] != by_method['sgd:fast']['accuracy']
  assert sorted(p.name for p in (tmp_path / 'checkpoints').iterdir()) == [
      'sgd', 'sgd@fast']
  assert any(line.startswith('sgd:fast ') for line in captured.out.splitlines())


def test_the_same_command_twice_shows_the_finished_run(tmp_path, capsys):
  argv = ['--methods', 'sgd,classp', '--seeds', '0,1']
  first = _run(argv, tmp_path, capsys)[1].out
  mtime = (tmp_path / 'results.json').stat().st_mtime_ns
  code, again = _run(argv, tmp_path, capsys)
  assert code == 0 and 'finished' in again.out and '--overwrite' in again.out
  assert str(tmp_path) in again.out
  rows = lambda out: [line for line in out.splitlines()  # noqa: E731
                      if line.startswith(('sgd ', 'classp '))]
  assert rows(again.out) == rows(first) and len(rows(first)) == 6  # and spread
  assert (tmp_path / 'results.json').stat().st_mtime_ns == mtime


def test_an_earlier_run_is_never_deleted_without_being_asked(tmp_path, capsys):
  assert _run(['--methods', 'sgd'], tmp_path, capsys)[0] == 0
  folder = tmp_path / 'checkpoints' / 'sgd'
  before = sorted(p.name for p in folder.iterdir())
  with pytest.raises(SystemExit) as exit_info:  # other settings: not that run
    _run(['--methods', 'sgd', '--set', 'sgd.learning_rate=0.3'], tmp_path,
         capsys)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert '--resume' in err and '--overwrite' in err and str(folder) in err
  assert sorted(p.name for p in folder.iterdir()) == before
  # --resume finds the finished run and trains nothing; --overwrite starts over.
  assert _run(['--methods', 'sgd', '--resume'], tmp_path, capsys)[0] == 0
  assert _run(['--methods', 'sgd', '--overwrite'], tmp_path, capsys)[0] == 0


def test_results_keep_every_method_the_folder_trained(tmp_path, capsys):
  """A second command in the same folder with other methods adds their rows
  (re-run methods replace theirs); one of other settings is refused before
  it trains, unless told to --overwrite."""
  assert _run(['--methods', 'sgd,adam'], tmp_path, capsys)[0] == 0
  first = json.loads((tmp_path / 'results.json').read_text())['results']
  assert _run(['--methods', 'adam,si', '--resume'], tmp_path, capsys)[0] == 0
  rows = json.loads((tmp_path / 'results.json').read_text())['results']
  assert [r['method'] for r in rows] == ['sgd', 'adam', 'si']
  assert rows[:2] == first
  with pytest.raises(SystemExit):
    _run(['--methods', 'classp', '--batch-size', '8'], tmp_path, capsys)
  err = capsys.readouterr().err
  assert 'holds results of other settings (config differ)' in err
  assert not (tmp_path / 'checkpoints' / 'classp').exists()


def test_list_settings_names_every_setting_its_default_and_range(capsys):
  """Nobody should need the source to learn that CLASSP's apply_decay is
  classp.decay_from_task."""
  assert cli.main(['--list-settings', '--benchmark', 'split-mnist-vdv',
                   '--scenario', 'class']) == 0
  out = capsys.readouterr().out
  assert 'defaults of split-mnist-vdv in the class scenario' in out
  lines = {line.split()[0]: line for line in out.splitlines()
           if line.startswith('  ')}
  assert 'apply_decay' in lines['classp.decay_from_task=1']
  assert "('sgd', 'adam', 'adagrad', 'classp')" in lines[
      "ewc.optimizer='adam'"]
  assert 'ewc.strength=100000000.0' in lines
  assert {line.split('.')[0] for line in lines} == set(methods.METHODS)


def _scenario_run(argv, scenario, out, capsys, epochs) -> dict:
  """``{method: accuracy matrix}`` of ``argv`` run in ``scenario``, checked
  to be named in the table and the JSON."""
  code, captured = _run([*argv, '--scenario', scenario], out, capsys, epochs)
  assert code == 0
  assert f'{scenario}-incremental' in captured.out
  saved = json.loads((out / 'results.json').read_text())
  assert saved['scenario'] == scenario
  return {r['method']: np.array(r['accuracy']) for r in saved['results']}


@pytest.mark.parametrize('scenario,chance', [
    ('task', 0.5), ('domain', 0.5), ('class', 0.1)])
def test_scenarios_of_split_benchmarks(tmp_path, capsys, scenario, chance):
  # One learning rate in every scenario (the defaults differ by scenario).
  r = _scenario_run(['--methods', 'adam', '--set', 'adam.learning_rate=1e-3'],
                    scenario, tmp_path, capsys, '5')['adam']
  assert np.all(np.diag(r) > chance + 0.2)  # every task is learnt
  if scenario == 'class':  # a shared head forgets the old classes entirely
    assert np.all(r[-1, :-1] < 0.1)


@pytest.mark.parametrize('scenario', ['domain', 'task', 'class'])
def test_scenarios_of_permuted_benchmarks(tmp_path, capsys, scenario):
  runs = _scenario_run(['--benchmark', 'permuted-digits', '--tasks', '3',
                        '--methods', 'adam,joint',
                        '--set', 'adam.learning_rate=1e-4'],
                       scenario, tmp_path, capsys, '3')
  r = runs['adam']
  assert np.all(np.diag(r) > 0.6)  # every task is learnt
  if scenario == 'class':
    # A task's outputs are never answered before it trains them, and the
    # newest task's outputs win over the old ones.
    assert np.all(np.triu(r, 1) == 0), r
    assert np.all(r[-1, :-1] < np.diag(r)[:-1] - 0.3), r
  else:  # a known task, or the same digits: far above chance
    assert np.all(r[-1] > 0.3)
  # Joint training, the upper bound, keeps every task in every scenario.
  assert np.all(runs['joint'][-1] > 0.8), runs['joint']


def test_steps_per_task_from_the_command_line(tmp_path, capsys):
  assert cli.main(['--methods', 'sgd', '--steps-per-task', '4', '--out',
                   str(tmp_path), '--no-progress', '--benchmark',
                   'split-digits']) == 0
  saved = json.loads((tmp_path / 'results.json').read_text())
  assert saved['config']['steps_per_task'] == 4


# van de Ven & Tolias (2019): their code's settings for split and permuted
# MNIST (GMvandeVen/continual-learning, param_values.py at f0b1461).
VAN_DE_VEN = {
    'split-mnist-vdv': dict(
        learning_rate=1e-3, shape=((400, 400), 128, 2000, 'torch'),
        scenarios={'task': (1e7, 1e8, 0.8, 50.0),
                   'domain': (1e6, 1e8, 0.7, 500.0),
                   'class': (1e8, 1e9, 0.8, 0.5)}),
    'permuted-mnist-vdv': dict(
        learning_rate=1e-4, shape=((1000, 1000), 128, 5000, 'torch'),
        scenarios={'task': (500.0, 500.0, 0.8, 5.0),
                   'domain': (500.0, 1000.0, 0.9, 5.0),
                   'class': (1.0, 5.0, 1.0, 0.1)}),
}


@pytest.mark.parametrize('benchmark,scenario', [
    (benchmark, scenario) for benchmark, preset in VAN_DE_VEN.items()
    for scenario in preset['scenarios']])
def test_the_van_de_ven_presets_have_the_published_settings_per_scenario(
    benchmark, scenario):
  preset = VAN_DE_VEN[benchmark]
  ewc, online, gamma, si = preset['scenarios'][scenario]
  suite = SUITES[benchmark]
  args = cli.build_parser().parse_args([
      '--benchmark', benchmark, '--scenario', scenario,
      '--methods', 'adam,ewc,ewc:online,si,joint'])
  chosen = {m.label: m.hyperparams for m in cli.choose_methods(
      args, suite, scenario)}
  for name in chosen:
    assert chosen[name]['learning_rate'] == preset['learning_rate']
    if name != 'adam':
      assert chosen[name]['optimizer'] == 'adam'
  assert chosen['ewc']['strength'] == ewc and chosen['ewc']['mode'] == 'separate'
  assert chosen['ewc:online'] == dict(chosen['ewc:online'], strength=online,
                                      mode='online', decay=gamma)
  assert chosen['si']['strength'] == si and chosen['si']['damping'] == 0.1
  assert (suite.hidden, suite.batch_size, suite.steps_per_task,
          suite.init) == preset['shape']
  # --set still wins over the preset.
  args = cli.build_parser().parse_args([
      '--benchmark', benchmark, '--methods', 'ewc:online',
      '--set', 'ewc:online.strength=3.0'])
  assert cli.choose_methods(args, suite, 'task')[0].hyperparams[
      'strength'] == 3.0


def test_the_permuted_van_de_ven_preset_frames_mnist_to_32_pixels():
  """Their permuted MNIST: 28x28 digits framed to 32x32, 10 tasks, 10
  outputs a task in the task and class scenarios, 10 shared in the domain
  one; a class-incremental task trains the outputs seen so far."""
  ds = load_digits()
  framed = suites.permuted_by_seed(  # 8x8 framed to MNIST's 28x28 first
      datasets.pad(ds, 10), 0, 10, 'class')
  assert framed[0].test_set()[0].shape[1:] == (32, 32, 1)
  assert [t.num_outputs for t in framed] == [100] * 10
  np.testing.assert_array_equal(
      np.flatnonzero(framed[2].train_logit_masks()[25]), np.arange(30))
  assert suites.permuted_by_seed(ds, 0, 10, 'domain')[0].num_outputs == 10
  assert SUITES['permuted-mnist-vdv'].num_tasks == 10


def test_the_van_de_ven_preset_pairs_classes_by_seed():
  """As in their code, each seed assigns the digits to tasks at random."""
  ds = load_digits()
  pairs = {seed: [t.classes for t in suites.split_pairs_by_seed(ds, seed, 'task')]
           for seed in (0, 1)}
  for groups in pairs.values():
    assert sorted(c for g in groups for c in g) == list(range(10))
    assert all(len(g) == 2 for g in groups)
  assert pairs[0] != pairs[1]
  assert pairs[0] == [t.classes for t in suites.split_pairs_by_seed(ds, 0, 'task')]
  seen = suites.split_pairs_by_seed(ds, 0, 'class')
  np.testing.assert_array_equal(
      seen[0].train_logit_masks()[0], np.isin(np.arange(10), pairs[0][0]))


def test_the_evaluation_batch_divides_the_mesh_data_axis(tmp_path, capsys,
                                                        monkeypatch):
  """On 7 devices, 2 configurations get a mesh of 2 x 3 devices: the
  evaluation batch is a multiple of the 3 that split each one's batches
  (999; rounded to all 7 devices, 994, the mesh would refuse it)."""
  seven = jax.devices()[:7]
  monkeypatch.setattr(jax, 'devices', lambda *args: seven)
  code, _ = _run(['--methods', 'sgd', '--seeds', '0,1', '--batch-size', '6',
                  '--steps-per-task', '2'], tmp_path, capsys, epochs=None)
  assert code == 0
  saved = json.loads((tmp_path / 'results.json').read_text())
  assert len(saved['devices']) == 7


def test_overwrite_deletes_nothing_before_the_run_starts(tmp_path, capsys):
  """--overwrite over a finished run, with a command that then fails (its
  data folder is empty), leaves the earlier checkpoints where they were."""
  assert _run(['--methods', 'sgd', '--steps-per-task', '3'], tmp_path,
              capsys, epochs=None)[0] == 0
  folder = tmp_path / 'checkpoints' / 'sgd'
  before = sorted(p.name for p in folder.iterdir())
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(SystemExit) as exit_info:
    _run(['--benchmark', 'split-mnist', '--methods', 'sgd', '--data-dir',
          str(empty), '--overwrite'], tmp_path, capsys)
  assert exit_info.value.code == 2
  assert 'no train-images' in capsys.readouterr().err
  assert before and sorted(p.name for p in folder.iterdir()) == before


def test_a_sweep_of_a_static_setting_names_it_and_the_variants(tmp_path,
                                                               capsys):
  with pytest.raises(SystemExit) as exit_info:
    _run(['--methods', 'er', '--sweep', 'er.buffer_size=100,200', '--sweep',
          'er.learning_rate=0.1,0.2'], tmp_path, capsys)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert '--sweep er.buffer_size: a change of this setting' in err
  assert 'er.learning_rate' not in err.split('--methods')[0]
  assert '--methods er:a,er:b --set er:a.buffer_size=' in err


def test_the_command_keeps_its_compiled_programs_for_the_next_run(tmp_path):
  """Without a cache of the user's, the command fills its own under
  $XDG_CACHE_HOME (JAX loads from it on the next run)."""
  env = {k: v for k, v in os.environ.items()
         if not k.startswith('JAX_PERSISTENT_CACHE')
         and k != 'JAX_COMPILATION_CACHE_DIR'}
  env.update(JAX_PLATFORMS='cpu', XDG_CACHE_HOME=str(tmp_path),
             XLA_FLAGS=xla_flags_without('device_count'))  # as the suite
  argv = [sys.executable, '-m', 'classp_optax.continual', '--methods', 'sgd',
          '--benchmark', 'split-digits', '--steps-per-task', '2',
          '--no-progress', '--out', str(tmp_path / 'out')]
  done = subprocess.run(argv, env=env, capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr
  # The train step, the evaluation and the model's initialisers at least.
  assert len(list((tmp_path / 'classp-optax' / 'xla').iterdir())) >= 5


def test_a_cache_the_user_configured_is_kept_and_the_flag_turns_it_off(
    monkeypatch, capsys):
  configured = jax.config.jax_compilation_cache_dir  # the suite's, conftest
  assert configured and compile_cache.enable() is None
  assert jax.config.jax_compilation_cache_dir == configured
  assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
  calls = []
  monkeypatch.setattr(compile_cache, 'enable', lambda: calls.append(1))
  assert cli.main(['--list-settings']) == 0
  assert cli.main(['--list-settings', '--no-compile-cache']) == 0
  assert calls == [1]
  capsys.readouterr()


def test_an_error_inside_a_library_shows_its_traceback(monkeypatch, capsys,
                                                       tmp_path):
  """A usage error is one line; a ValueError raised inside NumPy, JAX or
  another library (a bug, not the user's input) also shows where it came
  from, so that it can be reported."""

  def stacks_unequal_arrays(plan):
    return np.stack([np.zeros(1), np.zeros(2)])

  monkeypatch.setattr(cli, 'train_all', stacks_unequal_arrays)
  with pytest.raises(SystemExit) as exit_info:
    cli.main(['--methods', 'sgd', '--benchmark', 'split-digits',
              '--no-progress', '--out', str(tmp_path / 'bug')])
  err = capsys.readouterr().err
  assert exit_info.value.code == 2
  assert 'Traceback' in err and 'stacks_unequal_arrays' in err, err
  assert err.rstrip().endswith(
      'classp-continual: error: all input arrays must have the same shape'), err
  with pytest.raises(SystemExit) as exit_info:
    cli.main(['--methods', 'sgd', '--set', 'sgd.learning_rate=-1',
              '--out', str(tmp_path / 'usage')])
  err = capsys.readouterr().err
  assert exit_info.value.code == 2 and 'Traceback' not in err, err
  assert err.startswith('classp-continual: error: ') and 'learning_rate' in err
