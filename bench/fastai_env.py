"""The fastai side of the comparison scripts: a Python of its own environment, checked up front.

fastai is not a dependency of this project: the scripts that compare with it (fastai_compare.py,
fastai_tokens.py, fastai_import_check.py) run it in another environment's Python, made once with
the commands below. Without one, they say how to make it, instead of a traceback from subprocess.
"""

from __future__ import annotations

import subprocess

SETUP = ("python3 -m venv /tmp/fastai-venv && /tmp/fastai-venv/bin/pip install torch==2.13.0 && "
         "/tmp/fastai-venv/bin/pip install fastai==2.8.12 -c bench/constraints.txt")


def check_fastai_python(python: str) -> str:
    """fastai's version in `python`'s environment; SystemExit with the set-up commands if there is none."""
    try:
        p = subprocess.run([python, "-c", "import fastai; print(fastai.__version__)"], capture_output=True,
                           text=True, timeout=300)
    except (FileNotFoundError, PermissionError, NotADirectoryError):
        raise SystemExit(f"--fastai-python {python}: no such Python. Make an environment with fastai (once):\n"
                         f"  {SETUP}\nand pass --fastai-python /tmp/fastai-venv/bin/python") from None
    if p.returncode != 0:
        raise SystemExit(f"--fastai-python {python}: fastai does not import there "
                         f"({(p.stderr.strip().splitlines() or ['?'])[-1]}). Make an environment with fastai (once):\n"
                         f"  {SETUP}\nand pass --fastai-python /tmp/fastai-venv/bin/python")
    return p.stdout.strip()
