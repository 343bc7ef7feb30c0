"""Files written whole or not at all.

A run's ``results.json`` and a study's summaries gather runs that took hours;
a write cut short (a full disk, a killed process) must not lose the runs the
file held before. The text goes to a temporary file beside the target, is
flushed to disk, and is then renamed over the target: a rename within one
folder replaces the file in one step (``os.replace``, POSIX and Windows).
"""

import os
import pathlib
import secrets
import stat


def write_text(path, text: str) -> None:
  """Writes ``text`` (UTF-8) to ``path``, or raises and leaves ``path`` as
  it was, removing the temporary file. An existing file keeps its
  permissions; a new one gets the usual ones (0o666 less the umask)."""
  path = pathlib.Path(path)
  tmp = path.with_name(f'.{path.name}.{secrets.token_hex(6)}.tmp')
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
  try:
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    if path.exists():
      os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise
