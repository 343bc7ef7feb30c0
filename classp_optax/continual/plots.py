"""The accuracy of every task after every training stage: a panel per
configuration, seeds as a mean and a band, panels in a grid."""

import warnings

from matplotlib.figure import Figure
import numpy as np

COLUMNS = 4


def _configuration(result) -> str:
  """A result's label without its seed: the panel it belongs to."""
  settings = {k: v for k, v in result.swept.items() if k != 'seed'}
  return ' '.join([result.method, *(f'{k}={v}' for k, v in settings.items())])


def _panels(results) -> dict:
  panels: dict = {}
  for result in results:
    panels.setdefault(_configuration(result), []).append(result)
  return panels


def _title(name: str, runs: list) -> str:
  finished = [r for r in runs if r.diverged is None]
  seeds = f', {len(runs)} seeds' if len(runs) > 1 else ''
  if not finished:
    task = min(r.diverged['task'] for r in runs)
    return f'{name}  (diverged in task {task})'
  average = np.mean([np.asarray(r.accuracy)[-1].mean() for r in finished])
  diverged = len(runs) - len(finished)
  return (f'{name}  (avg {average:.3f}{seeds}'
          + (f', {diverged} diverged' if diverged else '') + ')')


def _draw(ax, runs: list) -> None:
  """Per task, its accuracy from the stage it was learnt on: the mean over
  the runs that did not diverge, and their range as a band."""
  finished = [np.asarray(r.accuracy) for r in runs if r.diverged is None]
  if not finished:  # the rows before the divergence
    finished = [np.asarray(r.accuracy) for r in runs]
  stack = np.stack(finished)
  stages = np.arange(stack.shape[1])
  for j, name in enumerate(runs[0].task_names):
    values = stack[:, j:, j]
    with warnings.catch_warnings():  # stages after a divergence: all NaN
      warnings.simplefilter('ignore', RuntimeWarning)
      mean, low, high = (f(values, axis=0)
                         for f in (np.nanmean, np.nanmin, np.nanmax))
    line, = ax.plot(stages[j:], mean, marker='o', markersize=3, label=name)
    if len(stack) > 1:
      ax.fill_between(stages[j:], low, high, alpha=0.2, color=line.get_color())
  ax.set_xticks(stages[::-(-len(stages) // 10)])  # at most 10 labels


def plot_accuracy_curves(results, path=None, title: str = '') -> Figure:
  """The figure of ``R[i, j]`` against stage ``i``, a line per task ``j``
  drawn from the stage it was learnt; a panel per configuration (its seeds
  as a mean and a band), at most :data:`COLUMNS` panels a row. Written as a
  PNG to ``path`` if given. It is a ``matplotlib.figure.Figure`` of its
  own: pyplot's state and backend are left as they are (a notebook shows
  the returned figure as its cell's value)."""
  panels = _panels(results)
  columns = min(len(panels), COLUMNS)
  rows = -(-len(panels) // columns)
  seen = [np.asarray(r.accuracy)[np.triu_indices(len(r.accuracy))[::-1]]
          for r in results]
  low = np.nanmin(np.concatenate(seen)) if seen else 0.0
  low = max(0.0, np.floor((low - 0.02) * 10) / 10) if np.isfinite(low) else 0.0
  fig = Figure(figsize=(3.6 * columns, 3.0 * rows + 0.5))
  axes = fig.subplots(rows, columns, sharey=True, squeeze=False)
  for ax, (name, runs) in zip(axes.flat, panels.items(), strict=False):
    _draw(ax, runs)
    ax.set_title(_title(name, runs), fontsize=9)
    ax.set_ylim(low, 1.005)
    ax.grid(alpha=0.3)
  for ax in axes.flat[len(panels):]:
    ax.set_visible(False)
  for column in range(columns):  # under each column's lowest panel
    axes[(len(panels) - 1 - column) // columns, column].set_xlabel(
        'after training task')
  for ax in axes[:, 0]:
    ax.set_ylabel('test accuracy')
  handles, labels = axes[0, 0].get_legend_handles_labels()
  if len(labels) <= 10:
    fig.legend(handles, labels, loc='lower center', ncol=min(len(labels), 5),
               fontsize=8, frameon=False)
  if title:
    fig.suptitle(title, fontsize=11)
  bottom = 0.4 / (3.0 * rows + 0.5) if len(labels) <= 10 else 0
  fig.tight_layout(rect=(0, bottom, 1, 1))
  if path is not None:
    fig.savefig(path, dpi=110)
  return fig
