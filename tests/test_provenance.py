"""Each row of results.json says what made it: the package's version and the
git commit of its source (marked when the package's files differ), and the
versions of JAX, Optax, Flax and Python. Rows that an earlier command wrote
keep their own, so that a folder gathered over several commits (a long study)
says which code made each number."""

import json
import platform
import shutil
import subprocess

import jax
import pytest

import classp_optax
from classp_optax.continual import cli
from classp_optax.continual import engine
from classp_optax.continual import methods
from classp_optax.continual import models
from classp_optax.continual import provenance
from classp_optax.continual import report
from classp_optax.continual import streams
from classp_optax.continual.config import TrainConfig
from classp_optax.continual.datasets import load_digits


def test_the_versions_are_those_imported():
  made = provenance.made_with()
  assert made['classp_optax'] == classp_optax.__version__
  assert made['jax'] == jax.__version__
  assert made['python'] == platform.python_version()


@pytest.mark.skipif(shutil.which('git') is None, reason='needs git')
def test_the_commit_is_the_source_checkouts_head():
  root = provenance.SOURCE_ROOT
  inside = subprocess.run(['git', '-C', str(root), 'rev-parse',
                           '--show-toplevel'], capture_output=True, text=True)
  if inside.returncode or inside.stdout.strip() != str(root):
    pytest.skip('the package is not run from a git checkout')
  head = subprocess.run(['git', '-C', str(root), 'rev-parse', 'HEAD'],
                        capture_output=True, text=True, check=True)
  assert provenance.commit_of(root).partition('+')[0] == head.stdout.strip()


@pytest.mark.skipif(shutil.which('git') is None, reason='needs git')
def test_a_dirty_tree_is_marked_and_a_folder_outside_git_has_no_commit(
    tmp_path):
  assert provenance.commit_of(tmp_path) is None
  git = ['git', '-C', str(tmp_path), '-c', 'user.name=t', '-c',
         'user.email=t@t']
  subprocess.run([*git, 'init', '-q'], check=True)
  code = tmp_path / provenance.PACKAGE / 'a.py'
  code.parent.mkdir()
  code.write_text('x = 1\n')
  (tmp_path / 'summary.json').write_text('{}\n')
  subprocess.run([*git, 'add', '.'], check=True)
  subprocess.run([*git, 'commit', '-q', '-m', 'a'], check=True)
  clean = provenance.commit_of(tmp_path)
  assert len(clean) == 40
  (tmp_path / 'untracked.txt').write_text('not code\n')
  (tmp_path / 'summary.json').write_text('{"a study": "wrote it"}\n')
  assert provenance.commit_of(tmp_path) == clean
  code.write_text('x = 2\n')
  assert provenance.commit_of(tmp_path) == clean + '+dirty'
  # a folder inside a checkout, but not its top, is not the package's source
  (tmp_path / 'sub').mkdir()
  assert provenance.commit_of(tmp_path / 'sub') is None


def test_each_row_keeps_what_made_it(tmp_path, capsys, monkeypatch):
  argv = ['--benchmark', 'split-digits', '--epochs', '1', '--out',
          str(tmp_path), '--no-progress']
  first = dict(provenance.made_with(), commit='a' * 40)
  monkeypatch.setattr(provenance, 'made_with', lambda: first)
  assert cli.main([*argv, '--methods', 'sgd']) == 0
  second = dict(first, commit='b' * 40)
  monkeypatch.setattr(provenance, 'made_with', lambda: second)
  assert cli.main([*argv, '--methods', 'adam', '--resume']) == 0
  rows = json.loads((tmp_path / report.RESULTS).read_text())['results']
  assert {r['method']: r['made_with'] for r in rows} == {
      'sgd': first, 'adam': second}


def test_a_run_trained_from_python_records_it_too():
  tasks = streams.split(load_digits(), scenario='task')[:1]
  run = engine.Run(lambda: models.make_model('mlp', (8, 8, 1), 10, seed=0,
                                             hidden=(8,)),
                   tasks, methods.make_method('sgd'),
                   TrainConfig(epochs=1, batch_size=32))
  result = engine.train(run)
  assert result.made_with == provenance.made_with()
  assert result.to_json()['made_with'] == provenance.made_with()
