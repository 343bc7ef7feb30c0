"""What a user installs: the sdist ships every test with its helpers (and the
benchmark scripts a test imports), and the license."""

import pathlib
import shutil
import subprocess
import sys
import tarfile

ROOT = pathlib.Path(__file__).parents[1]


def test_the_sdist_ships_every_test_with_its_helpers_and_the_license(tmp_path):
  # From a copy without build leftovers: setuptools would reuse the file
  # list of an earlier build's egg-info.
  source = tmp_path / 'source'
  shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
      '.*', '*.egg-info', '__pycache__', 'results', 'build', 'dist'))
  subprocess.run(
      [sys.executable, '-c', 'import sys, setuptools.build_meta as backend; '
       'backend.build_sdist(sys.argv[1])', str(tmp_path)],
      cwd=source, check=True, capture_output=True)
  (sdist,) = tmp_path.glob('*.tar.gz')
  with tarfile.open(sdist) as archive:
    names = {name.split('/', 1)[1] for name in archive.getnames()
             if '/' in name}
    info = archive.extractfile(f'{sdist.name[:-7]}/PKG-INFO').read().decode()
  # tests/test_tune.py imports benchmarks/tune.py and its helper.
  tests = {str(p.relative_to(ROOT)) for folder in ('tests', 'benchmarks')
           for p in (ROOT / folder).glob('*.py')}
  assert tests <= names, sorted(tests - names)
  assert {'LICENSE', 'tests/conftest.py', 'tests/__init__.py'} <= names
  assert 'License-Expression: Apache-2.0' in info
