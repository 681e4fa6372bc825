"""A real single-node Slurm for the launcher tests: started here as root, stopped after."""

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _node_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False)
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mixed", "allocated"))


@pytest.fixture(scope="session")
def slurm() -> Iterator[None]:
    """A Slurm cluster of this one host (partition ``debug``), or a skip saying why not."""
    pytest.importorskip("submitit", reason='submitit missing: pip install -e ".[slurm]"')
    started = False
    if not _node_up():
        if os.geteuid() != 0:
            pytest.skip("no Slurm here, and starting one (tests/slurm/start_slurm.sh) needs root")
        proc = subprocess.run(
            [str(HERE / "start_slurm.sh")], capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0 or not _node_up():
            pytest.skip(f"could not start Slurm: {(proc.stderr or proc.stdout).strip()[-500:]}")
        started = True
    yield
    if started:
        subprocess.run([str(HERE / "stop_slurm.sh")], capture_output=True, timeout=120)
