"""bench/contention.sh: a shell script that is too slow to run here; what can drift is checked."""

import re
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "contention.sh"


def test_the_contention_script_parses_and_its_command_is_one_the_cli_takes():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    from ulmfit.cli import build_parser

    text = SCRIPT.read_text()
    line = re.search(r'"\$U" (finetune-lm .*?)> ', text.replace("\\\n", " "), re.S).group(1)
    argv = [a.strip('"') for a in line.split()]
    argv = [{"$W/rt3k.csv": "in.csv", "$W/o": "out"}.get(a, a) for a in argv]
    a = build_parser().parse_args(argv)  # an option renamed or removed fails here
    assert a.max_tokens == 60000 and a.freeze_epochs == 1 and a.epochs == 0
