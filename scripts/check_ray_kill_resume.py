"""kill -9 of a `zoo build --backend ray` driver mid-build, then a rerun: what is lost?

    python scripts/check_ray_kill_resume.py [--root DIR] [--backend ray|local]

Builds a 4-run plan (fsm:10, `full`, H=16, 3,000 steps, training state every 100 steps, no early
stop) in a child process, kills that process with SIGKILL once one run has finished and another
has written a training state at step 300 or later, records the step of every run's last training state, reruns the build and prints, per
run, whether it was finished before the kill, the step its state held, and whether the rerun
resumed it (``metrics.json: resumed``) or trained it from scratch. Checks: finished runs are not
retrained, interrupted runs resume from their state, so at most ``checkpoint_every`` steps per
run in flight are lost.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import sys
from workbench import zoo
from check_ray_kill_resume import plan
sys.exit(zoo.build(root=sys.argv[1], jobs=2, plan=plan(), progress=False, backend=sys.argv[2]))
"""


def plan():
    from workbench import zoo

    opts = (("d_hidden", 16), ("steps", 3000), ("checkpoint_every", 100), ("eval_every", 100),
            ("early_stop", False), ("val_sequences", 32), ("long_val_length", 50),
            ("long_val_sequences", 32), ("eval_lengths", (10, 50)), ("eval_sequences", 64),
            ("lr", (1e-2,)), ("weight_decay", (0.0,)))
    return [zoo.Run(f"kill_fsm10_full_s{s}", "fsm:10", "full", s, options=opts) for s in range(4)]


def state_steps(root: Path) -> dict[str, int | None]:
    out = {}
    for r in plan():
        states = list((root / "zoo" / r.name).glob(".train_state/*/state.json"))
        out[r.name] = max((json.loads(p.read_text())["step"] for p in states), default=None)
    return out


def finished(root: Path) -> set[str]:
    return {r.name for r in plan() if (root / "zoo" / r.name / "metrics.json").exists()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=None)
    ap.add_argument("--backend", default="ray", choices=("ray", "local"))
    args = ap.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="killcheck-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1]),
         os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(root), args.backend], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    while time.time() - t0 < 600:
        steps = state_steps(root)
        done = finished(root)
        if done and any(s and s >= 300 for n, s in steps.items() if n not in done):
            break
        if child.poll() is not None:
            print("the build ended before it could be killed; output:\n" + child.stdout.read())
            return 1
        time.sleep(0.5)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    time.sleep(3)   # let the workers notice their driver is gone
    done_before, steps_before = finished(root), state_steps(root)
    mtimes = {n: (root / "zoo" / n / "model.safetensors").stat().st_mtime_ns for n in done_before}
    print(f"killed the driver (SIGKILL) after {time.time() - t0:.0f}s; finished: {sorted(done_before)}")
    rerun = subprocess.run([sys.executable, "-c", CHILD, str(root), args.backend], env=env,
                           capture_output=True, text=True, timeout=1200)
    print(rerun.stdout.strip().splitlines()[0] if rerun.stdout else rerun.stderr[-2000:])
    ok = rerun.returncode == 0
    print(f"{'run':<22} {'before kill':<16} {'rerun':<24}")
    for r in plan():
        m = json.loads((root / "zoo" / r.name / "metrics.json").read_text())
        if r.name in done_before:
            same = (root / "zoo" / r.name / "model.safetensors").stat().st_mtime_ns == mtimes[r.name]
            ok &= same
            after = "untouched" if same else "RETRAINED"
            before = "finished"
        else:
            s = steps_before[r.name]
            before = f"state at step {s}" if s else "no state yet"
            after = "resumed" if m.get("resumed") else "trained from step 0"
            ok &= bool(m.get("resumed")) == bool(s)
        print(f"{r.name:<22} {before:<16} {after:<24}")
    print("OK: only the steps since each in-flight run's last state write were lost" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
