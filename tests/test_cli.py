"""The classp-continual command, end to end on the embedded digits."""

import json

import pytest

from classp_optax.continual import cli


def test_default_benchmark_writes_table_json_and_png(tmp_path, capsys):
  assert cli.main(['--methods', 'classp,ewc,si', '--epochs', '1', '--out',
                   str(tmp_path), '--no-progress',
                   '--set', 'ewc.mode=online', '--set', 'ewc.decay=0.9']) == 0
  out = capsys.readouterr().out
  assert 'split-digits' in out and 'forgetting' in out and 'BWT' in out
  rows = [line.split() for line in out.splitlines()
          if line.startswith(('classp ', 'ewc ', 'si '))]
  assert [r[0] for r in rows] == ['classp', 'ewc', 'si']
  saved = json.loads((tmp_path / 'results.json').read_text())
  assert saved['benchmark'] == 'split-digits'
  by_method = {r['method']: r for r in saved['results']}
  assert by_method['ewc']['hyperparams']['mode'] == 'online'
  for r in saved['results']:
    assert len(r['accuracy']) == 5 and len(r['accuracy'][0]) == 5
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
    (['--set', 'classp.momentum=0.9'], "unexpected keyword argument 'momentum'"),
    (['--methods', 'sgd', '--set', 'adam.learning_rate=1'], 'not in --methods'),
    (['--epochs', '0'], 'positive integers'),
    (['--epochs', '1,2'], '2 values for 5 tasks'),
    (['--benchmark', 'split-mnist', '--data-dir', '/nonexistent'], 'no train-images'),
    (['--batch-size', '0'], '--batch-size must be >= 1'),
    (['--seed', '-1'], '--seed must be >= 0'),
    (['--tasks', '3'], '--tasks applies to permuted benchmarks only'),
    (['--benchmark', 'permuted-digits', '--tasks', '0'], '--tasks must be >= 1'),
    (['--validation', '1.5'], r'--validation must be in (0, 1)'),
])
def test_bad_input_exits_2_with_a_clear_message(argv, message, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main([*argv, '--out', str(tmp_path), '--no-progress'])
  assert exit_info.value.code == 2
  assert message in capsys.readouterr().err

