"""Score a replay's log on a Ray cluster, then merge and simulate here.

    python -m canary_replay.ray SCENARIO [--address auto] [--shards N] [--cache-dir URL] [--out DIR]

1. `canary-replay shard plan` checks the scenario and splits the log's parts into N shards.
2. One Ray task per shard runs `canary-replay shard run PLAN --index K` on a worker: it scores
   the shard's parts into the shared cache, each part committed whole. Ray retries a task whose
   worker is lost (`--retries`); a retried shard only scores the parts that are still missing.
3. `canary-replay run SCENARIO --cache-dir URL` finds every part in the cache, scores nothing,
   simulates and writes the reports; its exit code is this command's (0 promote, 1 roll back,
   3 hold, 2 invalid input, 4 failure).

Workers need the wheel (pip install canary-replay) and the scenario, models and controller files
at the same paths as here (a shared volume or the same image); the traffic and the cache live in
object storage, reached with each cloud's credentials from the workers' environment.
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

from canary_replay import binary

FAILURE = 4


class ShardFailed(Exception):
    """A shard's canary-replay exited with an error of its own (not a lost worker: not retried)."""

    def __init__(self, index: int, code: int, message: str):
        super().__init__(index, code, message)
        self.index, self.code, self.message = index, code, message

    def __str__(self) -> str:
        return f"shard {self.index} failed (exit {self.code}): {self.message}"


def _end_with_parent() -> None:
    """Runs in the shard's process before it starts: it is killed when its Ray worker dies, so a
    lost worker leaves no scoring behind (what it had not committed is never read)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def score_shard(plan_text: str, index: int, threads: int) -> dict:
    """One shard, on whichever worker Ray chose: `canary-replay shard run` on the task's CPUs."""
    with tempfile.TemporaryDirectory(prefix="canary-replay-shard-") as folder:
        plan = os.path.join(folder, "plan.json")
        with open(plan, "w", encoding="utf-8") as f:
            f.write(plan_text)
        done = subprocess.run(
            [binary(), "shard", "run", plan, "--index", str(index), "--threads", str(threads), "-q"],
            capture_output=True,
            text=True,
            preexec_fn=_end_with_parent,
        )
    if done.returncode != 0:
        raise ShardFailed(index, done.returncode, done.stderr.strip())
    return json.loads(done.stdout.strip().splitlines()[-1])


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m canary_replay.ray", description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", help="the scenario file (TOML)")
    parser.add_argument("--address", default="auto", help="the Ray cluster (default: auto, the one this machine belongs to)")
    parser.add_argument("--shards", type=int, default=0, help="shards to split the log into (default: twice the cluster's CPUs)")
    parser.add_argument("--cache-dir", help="score cache every worker reaches: s3://, gs:// or az:// URL (or a shared folder)")
    parser.add_argument("--out", help="output folder of the run (default: reports/<scenario name>/)")
    parser.add_argument("--cpus-per-shard", type=int, default=1, help="CPUs each shard task reserves and scores on (default 1)")
    parser.add_argument("--retries", type=int, default=3, help="times Ray retries a shard whose worker was lost (default 3)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        import ray
    except ImportError:
        print("error: Ray is not installed here\n  fix: pip install 'canary-replay[ray]' (or pip install 'ray[default]')", file=sys.stderr)
        return FAILURE
    say = (lambda *_: None) if args.quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    scenario = os.path.abspath(args.scenario)
    try:
        ray.init(address=args.address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
    except Exception as e:  # ConnectionError, or no cluster at "auto"
        print(f"error: cannot reach the Ray cluster at {args.address}: {e}\n  fix: start one (ray start --head) or give its address with --address host:port", file=sys.stderr)
        return FAILURE
    cpus = int(ray.cluster_resources().get("CPU", 1))
    shards = args.shards or 2 * max(1, cpus // args.cpus_per_shard)
    if args.cache_dir is None:
        say("note: no --cache-dir: shards share this machine's default cache, which only workers on this machine reach")

    with tempfile.TemporaryDirectory(prefix="canary-replay-plan-") as folder:
        plan_path = os.path.join(folder, "plan.json")
        command = [binary(), "shard", "plan", scenario, "--shards", str(shards), "--out", plan_path]
        if args.cache_dir:
            command += ["--cache-dir", args.cache_dir]
        planned = subprocess.run(command, capture_output=True, text=True)
        if planned.returncode != 0:
            sys.stderr.write(planned.stderr)
            return planned.returncode
        with open(plan_path, encoding="utf-8") as f:
            plan_text = f.read()
    plan = json.loads(plan_text)
    work = [k for k, shard in enumerate(plan["shards"]) if shard["parts"]]
    say(f"{plan['rows']} requests in {sum(len(s['parts']) for s in plan['shards'])} part(s): {len(work)} shard task(s) on {len(ray.nodes())} node(s), {cpus} CPU(s); cache {plan['cache_dir']}")

    task = ray.remote(num_cpus=args.cpus_per_shard, max_retries=args.retries, retry_exceptions=False)(score_shard)
    started = time.monotonic()
    pending = {task.remote(plan_text, k, args.cpus_per_shard): k for k in work}
    rows = scored = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        index = pending.pop(ready[0])
        try:
            report = ray.get(ready[0])
        except Exception as e:  # a shard's own error, or a task Ray gave up on
            cause = getattr(e, "cause", None) or e
            for ref in pending:
                ray.cancel(ref, force=True)
            if isinstance(cause, ShardFailed):
                print(f"error: {cause}", file=sys.stderr)
                return cause.code
            print(f"error: shard {index} could not be scored on the cluster: {e}\n  fix: check the workers (ray status) and run again: parts already scored are kept", file=sys.stderr)
            return FAILURE
        rows += report["rows"]
        scored += report["parts_scored"]
        elapsed = time.monotonic() - started
        say(f"[{len(work) - len(pending)}/{len(work)}] shard {index}: {report['rows']} requests, {report['parts_scored']} part(s) scored, {report['parts_reused']} reused, {report['seconds']:.1f}s ({rows / max(elapsed, 1e-9):,.0f} requests/s overall)")
    elapsed = time.monotonic() - started
    say(f"scored {len(work)} shard(s) in {elapsed:.1f}s: {len(work) / max(elapsed, 1e-9):.2f} shards/s, {rows / max(elapsed, 1e-9):,.0f} requests/s; merging and simulating here")
    ray.shutdown()

    command = [binary(), "run", scenario]
    if args.cache_dir:
        command += ["--cache-dir", args.cache_dir]
    if args.out:
        command += ["--out", args.out]
    if args.quiet:
        command += ["-q"]
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
