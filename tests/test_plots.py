"""The figure: a panel per configuration, seeds as a band, many panels in a
grid, a run that diverged said to have diverged."""

import struct
import subprocess
import sys

from matplotlib.figure import Figure
import numpy as np

from classp_optax.continual import plots
from classp_optax.continual.results import RunResult


def _result(method, seed=None, diverged=None, shift=0.0, **swept):
  accuracy = np.tril(np.full((3, 3), 0.9 - shift)) + np.triu(
      np.full((3, 3), 0.1), 1)
  if diverged:
    accuracy[diverged['task']:] = np.nan
  if seed is not None:
    swept['seed'] = seed
  return RunResult(method=method, hyperparams={}, task_names=['a', 'b', 'c'],
                   accuracy=accuracy, state_bytes=0, wall_time=0.0,
                   diverged=diverged, swept=swept)


def _png_size(path) -> tuple[int, int]:
  width, height = struct.unpack('>II', path.read_bytes()[16:24])
  return width, height


def test_seeds_share_a_panel_and_many_panels_make_a_grid(tmp_path):
  sweep = [_result('classp', seed=s, shift=0.1 * s, learning_rate=lr)
           for lr in (0.1, 0.2) for s in range(6)]
  panels = plots._panels(sweep)
  assert list(panels) == ['classp learning_rate=0.1',
                          'classp learning_rate=0.2']
  assert plots._title('classp learning_rate=0.1', panels[
      'classp learning_rate=0.1']) == (
      'classp learning_rate=0.1  (avg 0.650, 6 seeds)')
  path = tmp_path / 'grid.png'
  plots.plot_accuracy_curves(
      [_result(f'm{k}', learning_rate=k) for k in range(12)], path)
  width, height = _png_size(path)
  assert width < 1700 and height > 900  # 3 rows of 4, not a row of 12


def test_a_run_that_diverged_is_titled_diverged(tmp_path):
  runs = [_result('ewc', diverged=dict(task=1, step=3, what='the loss'))]
  assert plots._title('ewc', runs) == 'ewc  (diverged in task 1)'
  mixed = [*runs, _result('ewc')]
  assert plots._title('ewc', mixed) == 'ewc  (avg 0.900, 2 seeds, 1 diverged)'
  plots.plot_accuracy_curves(runs, tmp_path / 'diverged.png')
  assert (tmp_path / 'diverged.png').stat().st_size > 10_000


def test_the_figure_is_returned_and_saved_only_where_asked(tmp_path):
  figure = plots.plot_accuracy_curves([_result('classp')], title='t')
  assert isinstance(figure, Figure) and figure.axes
  assert list(tmp_path.iterdir()) == []
  plots.plot_accuracy_curves([_result('classp')], tmp_path / 'a.png')
  assert (tmp_path / 'a.png').exists()


def test_importing_the_toolkit_leaves_matplotlib_as_the_user_set_it():
  """A notebook's backend stays: no module of the package chooses one, nor
  loads pyplot (whose state a figure would join)."""
  code = (
      'import sys, matplotlib\n'
      "matplotlib.use('svg')\n"
      'import classp_optax.continual.cli, classp_optax.continual.report\n'
      'from classp_optax.continual import plots\n'
      "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n")
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=True).stdout
  assert out.split() == ['svg', 'False']
