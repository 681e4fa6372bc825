"""One prepared GPU check: the CUDA tests, ``siamlab bench`` and a short study, in one folder.

Usage (on the GPU machine, from the repository root; it installs nothing from a network):
    python3 benchmarks/gpu_check.py --out DIR [--data DIR] [--wheels DIR] [--budget 470]
Once, on a machine with a network, to make the folder the GPU machine needs:
    python benchmarks/gpu_check.py --prepare .gpucheck [--data ../shared/data]
In CI-sized form (CPU, tiny sizes, the CUDA tests skipping; tests/test_gpu_check.py):
    python benchmarks/gpu_check.py --tiny --out DIR

Steps, each a subprocess with its own log in ``--out`` (at most 8 files come back from a
lent GPU machine; these are 6):
    env.txt                   python, torch, CUDA, the GPU, TF32 switches, nvidia-smi.
    (summary.json also names the commit ``--prepare`` was made at: the GPU machine gets
    the working tree without its git folder.)
    pytest_cuda.txt           ``pytest -m cuda``: the tests that skip without a GPU.
    bench_resnet18_cifar.txt  ``siamlab bench --profile cifar10`` on the CIFAR-10 subset: the
                              reference (fp32), siamlab fp32, bf16 + channels_last, then
                              the same with torch.compile.
    bench_resnet50_224.txt    the same at the imagenet profile (ResNet-50, 224 px views of the
                              CIFAR-10 subset, batch 256).
    study_stopgrad.txt        2 epochs of studies/stopgrad.yaml at the cifar10 profile.
    summary.json              per step: command, exit status, seconds, ok/failed/timeout/skipped;
                              the commit, the data, the packages installed.
The steps run in order of importance and share one time budget (``--budget`` seconds:
each step gets what is left, one that cannot start in time is skipped), so the whole check
ends within it; the compile benches come last.

The GPU machine's image has torch but not pydantic or h5netcdf: ``--prepare`` downloads
their wheels (the versions installed here, for CPython 3.12 x86-64) and copies the CIFAR-10
subset (``cifar10_train.npz``, ``cifar10_test.npz``; nothing else of the data folder);
the check installs the wheels with ``pip --no-index --target`` into its work folder.
"""

import argparse
import datetime
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ("cifar10_train.npz", "cifar10_test.npz")
WHEELS = ("pydantic", "pydantic_core", "annotated_types", "typing_inspection", "h5netcdf")
WHEELS_PURE_EXTRA = ("typing_extensions",)  # pydantic wants a newer one than some images have
TINY = [  # CPU, seconds: the same commands on a few images and a narrow network
    "data.train_limit=32",
    "data.test_limit=32",
    "data.image_size=16",
    "train.batch_size=16",
    "model.dim=64",
    "model.projector.hidden_dim=64",
    "diagnostics.knn_k=5",
    "train.threads=1",
]
COMMIT_FILE = "commit.txt"  # in the --prepare folder: the commit it was made at
PYTEST = ["-p", "no:cacheprovider", "--continue-on-collection-errors"]
ENV_PROBE = """
import os, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__)
print("cuda", torch.version.cuda, "| cudnn", torch.backends.cudnn.version())
print("cuda available:", torch.cuda.is_available(), "| cpus:", os.cpu_count())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu:", p.name, f"{p.total_memory / 2**30:.0f} GiB", f"sm_{p.major}{p.minor}",
          p.multi_processor_count, "SMs | bf16:", torch.cuda.is_bf16_supported())
    print("tf32 matmul:", torch.backends.cuda.matmul.allow_tf32,
          "| tf32 cudnn:", torch.backends.cudnn.allow_tf32)
import subprocess
try:
    print(subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout)
except (OSError, subprocess.SubprocessError) as exc:
    print("nvidia-smi:", exc)
"""


@dataclass
class Step:
    """One command of the check and what became of it."""

    name: str
    file: str
    command: list[str]
    cap_s: float
    rc: int | None = None
    seconds: float = 0.0
    status: str = "pending"
    note: str = ""


@dataclass
class Check:
    """The folders, budget and environment the steps run with."""

    out: Path
    work: Path
    budget_s: float
    env: dict[str, str]
    started: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        """Seconds of the budget not spent yet."""
        return self.budget_s - (time.monotonic() - self.started)

    def run(self, step: Step) -> None:
        """Run ``step`` with what is left of the budget, appending to its log."""
        limit = min(step.cap_s, self.left() - 5)
        if limit < 20:
            step.status, step.note = "skipped", f"time budget: {self.left():.0f} s left"
            return
        log = self.out / step.file
        t0 = time.monotonic()
        with open(log, "a") as fh:
            fh.write(f"$ {' '.join(step.command)}\n")
            fh.flush()
            try:
                done = subprocess.run(
                    step.command,
                    cwd=ROOT,
                    env=self.env,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    timeout=limit,
                )
                step.rc = done.returncode
                step.status = "ok" if done.returncode == 0 else "failed"
            except subprocess.TimeoutExpired:
                step.status, step.note = "timeout", f"killed after {limit:.0f} s"
            step.seconds = time.monotonic() - t0
            fh.write(f"\n[{step.name}: {step.status} in {step.seconds:.1f} s]\n\n")


def _missing() -> list[str]:
    return [m for m in ("pydantic", "h5netcdf") if importlib.util.find_spec(m) is None]


def _install_wheels(wheels: Path | None, work: Path) -> tuple[str | None, str]:
    """Install the carried wheels when the image lacks a package; (site folder, note)."""
    missing = _missing()
    if not missing:
        return None, "all packages present"
    found = sorted(wheels.glob("*.whl")) if wheels and wheels.is_dir() else []
    if not found:
        return None, f"missing {', '.join(missing)} and no wheels (see --prepare)"
    site = work / "site"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    cmd += ["--no-compile", "--target", str(site), *map(str, found)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:  # the steps then fail on the import, each in its own log
        return None, f"pip could not install the carried wheels: {done.stderr.strip()[-500:]}"
    return str(site), f"installed {len(found)} carried wheels into {site}"


def _data_sets(data: Path | None) -> tuple[list[str], str]:
    """``--set`` values reading the CIFAR-10 subset; the bundled digits without it."""
    if data and all((data / f).is_file() for f in CIFAR):
        return ["data.dataset=npz", f"data.root={data.resolve()}", "data.name=cifar10"], "cifar10"
    return ["data.dataset=digits"], "digits (no CIFAR-10 subset found)"


def _sets(values: list[str]) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


def plan(args: argparse.Namespace, data_sets: list[str], work: Path) -> list[Step]:
    """The steps in the order they run."""
    py, tiny = sys.executable, args.tiny
    size = TINY if tiny else [f"data.num_workers={min(8, os.cpu_count() or 1)}"]
    timing = "--steps 1 --block 1 --warmup 0 --loader-batches 2 --peak-n 64"
    if not tiny:
        # an 8192^3 product: ~1.4 ms in bf16 on an H100, where 2048^3 (~25 us) would time
        # the launch and the sync more than the GPU's peak
        timing = "--steps 20 --block 5 --warmup 2 --loader-batches 4 --peak-n 8192"
    bench = [py, "-m", "siamlab", "bench", *timing.split()]
    fast = ["train.precision=bf16", "train.channels_last=true"]
    r18 = [*bench, "--profile", "cifar10", *_sets([*data_sets, *size, *fast])]
    r50_size = [*size] if tiny else [*size, "data.image_size=224", "train.batch_size=256"]
    r50 = [*bench, "--profile", "imagenet", *_sets([*data_sets, *r50_size, *fast])]
    compiled = _sets(["train.compile=true"])
    tests = "tests/test_cuda.py" if tiny else "tests"
    study = [py, "-m", "siamlab", "run", "studies/stopgrad.yaml", "--profile", "cifar10"]
    study += ["--no-progress", *_sets([*data_sets, *size, "train.epochs=2"])]
    study += _sets([f"output.root={work / 'results'}"])
    steps = [
        Step("env", "env.txt", [py, "-c", ENV_PROBE], 60),
        Step(
            "cuda_tests",
            "pytest_cuda.txt",
            [py, "-m", "pytest", "-m", "cuda", "-rA", *PYTEST, tests],
            150,
        ),
        Step("bench_resnet18_cifar", "bench_resnet18_cifar.txt", r18, 90),
        Step("bench_resnet50_224", "bench_resnet50_224.txt", r50, 100),
        Step("study_stopgrad", "study_stopgrad.txt", study, 150),
    ]
    if not tiny:  # compile: the first step compiles (about a minute); last, as the costliest
        steps.append(
            Step("bench_resnet18_compile", "bench_resnet18_cifar.txt", r18 + compiled, 150)
        )
        steps.append(Step("bench_resnet50_compile", "bench_resnet50_224.txt", r50 + compiled, 180))
    return steps


def prepare(folder: Path, data: Path) -> None:
    """Copy the CIFAR-10 subset and download the wheels the GPU machine lacks."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for name in CIFAR:
        shutil.copyfile(data / name, folder / "data" / name)
    pins = [f"{name}=={version(name)}" for name in (*WHEELS, *WHEELS_PURE_EXTRA)]
    platforms = [f"manylinux_2_{n}_x86_64" for n in (28, 27, 17)] + ["manylinux2014_x86_64"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "3.12", "--implementation", "cp", "-d", str(folder / "whl")]
    cmd += [arg for p in platforms for arg in ("--platform", p)]
    subprocess.run([*cmd, *pins], check=True)
    (folder / COMMIT_FILE).write_text(_commit() + "\n")
    print(f"ready: {folder} (carry it; e.g. run 'python3 benchmarks/gpu_check.py --out $OUT')")


def _commit() -> str:
    """This tree's git commit, marked when files differ from it; "unknown" without git."""
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    except OSError:
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def _prepared_commit(wheels: Path) -> str:
    """The commit the carried folder (the wheels' parent) was prepared at, else this tree's."""
    recorded = wheels.parent / COMMIT_FILE
    if recorded.is_file():
        return f"{recorded.read_text().strip()} (when --prepare ran)"
    return _commit()


def main() -> None:
    """Run the check (or prepare its folder) and write summary.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "gpu-check")
    ap.add_argument("--data", type=Path, default=None, help="folder with the CIFAR-10 subset")
    ap.add_argument("--wheels", type=Path, default=ROOT / ".gpucheck" / "whl")
    ap.add_argument("--budget", type=float, default=470.0, help="seconds for the whole check")
    ap.add_argument("--tiny", action="store_true", help="CI size: tiny data and network, CPU")
    ap.add_argument("--prepare", type=Path, default=None, help="make the folder to carry")
    args = ap.parse_args()
    candidates = [args.data, ROOT / ".gpucheck" / "data", ROOT.parent / "shared" / "data"]
    data = next((d for d in candidates if d and (d / CIFAR[0]).is_file()), None)
    if args.prepare:
        if data is None:
            ap.error("no CIFAR-10 subset found; pass --data")
        prepare(args.prepare, data)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="siamlab-gpu-check-"))
    site, installed = _install_wheels(args.wheels, work)
    paths = [p for p in (site, str(ROOT), os.environ.get("PYTHONPATH")) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}
    env["COLUMNS"] = "160"  # rich's tables in the logs: one line per arm
    data_sets, data_note = _data_sets(data)
    check = Check(args.out, work, args.budget, env)
    steps = plan(args, data_sets, work)
    for step in steps:
        check.run(step)
    summary = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "tiny": args.tiny,
        "budget_s": args.budget,
        "total_s": round(time.monotonic() - check.started, 1),
        "commit": _prepared_commit(args.wheels),
        "data": data_note,
        "packages": installed,
        "steps": [asdict(s) for s in steps],
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    for s in steps:
        print(f"{s.name:24} {s.status:8} {s.seconds:6.1f} s  {s.note}")
    print(f"figures in {args.out}")


if __name__ == "__main__":
    main()
