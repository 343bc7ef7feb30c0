"""The accuracy of every task after every training stage, one panel per method."""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_accuracy_curves(results, path, title: str = '') -> None:
  """Writes a PNG: for each method, ``R[i, j]`` against stage ``i``, a line per
  task ``j`` drawn from the stage it was learnt."""
  n = len(results)
  seen = [np.asarray(r.accuracy)[np.triu_indices(len(r.accuracy))[::-1]]
          for r in results]
  low = max(0.0, np.floor((min(v.min() for v in seen) - 0.02) * 10) / 10)
  fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.2), sharey=True,
                           squeeze=False)
  for ax, result in zip(axes[0], results, strict=True):
    r = np.asarray(result.accuracy)
    stages = np.arange(len(r))
    for j, name in enumerate(result.task_names):
      ax.plot(stages[j:], r[j:, j], marker='o', markersize=3, label=name)
    ax.set_title(f'{result.label}  (avg {r[-1].mean():.3f})', fontsize=10)
    ax.set_xlabel('after training task')
    ax.set_xticks(stages[::-(-len(stages) // 10)])  # at most 10 labels
    ax.set_ylim(low, 1.005)
    ax.grid(alpha=0.3)
  axes[0, 0].set_ylabel('test accuracy')
  handles, labels = axes[0, 0].get_legend_handles_labels()
  if len(labels) <= 10:
    fig.legend(handles, labels, loc='lower center', ncol=min(len(labels), 5),
               fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.3)
  if title:
    fig.suptitle(title, fontsize=11)
  fig.tight_layout(rect=(0, 0.12 if len(labels) <= 10 else 0, 1, 1))
  fig.savefig(path, dpi=120)
  plt.close(fig)
