"""Grading workers on loopback (Redis queue, PostgreSQL database): throughput scaling with 1, 2
and 4 worker processes, queue latency with idle workers, and a deadline rush.

Every run below is a whole service of its own (bench/worker_stack.py): a new PostgreSQL schema,
a new Huey queue name, the web app under gunicorn and real `grader worker` processes, all
dropped afterwards. Uploads go through the real upload API (HTTP 202); times come from the
database's submission rows.

* scaling: ``--submissions`` uploads at once, to 1, 2, 4 workers; submissions per minute from
  the first upload to the last result, the speed-up over 1 worker and the fraction of the
  ideal (linear up to the cores, flat beyond);
* latency: ``--latency`` uploads, one at a time with random gaps, to idle workers; upload
  accepted (202 received) -> grading started (``started_at``), median and p99 (target < 1 s);
* rush: ``--rush`` uploads at random moments within ``--window`` seconds, from many students,
  to ``--rush-workers`` workers; every upload must end with a final status and exactly one
  result row; the time to drain (against the ideal, ``count x --warm-baseline-s / cores``,
  when the warm baseline of bench_overhead.py is given), and the leaderboard page's latency
  (``GET /`` every 0.25 s while the rush runs; target p99 < 50 ms).

    .venv/bin/python bench/bench_workers.py [--submissions 24] [--workers 1,2,4] [--latency 60]
        [--rush 200 --window 120 --rush-workers 2] [--full] [--warm-baseline-s S]

Submissions: by default the tests' tiny one (the reference NumPy layers, tiny untrained nets:
a few seconds each on the real hidden data); ``--full`` cycles the demo's good, mediocre and
broken samples (`.venv/bin/grader demo --no-serve` once). Needs the hidden data under
$GRADER_HOME (built here if missing, as `grader demo` does), PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from machine import machine
from worker_stack import PENDING, STOP, Row, Service, Upload, pause

from grader.config import Settings, load_assignment
from grader.demo import ensure_hidden_data
from grader.sandbox.base import available_cores
from tests.leaderboard.factories import late_invalid_zip, tiny_good_zip

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
TARGET_LATENCY_S = 1.0
SAMPLES = ("good", "mediocre", "broken")


@dataclass(frozen=True)
class Options:
    pg_url: str
    redis_url: str
    sandbox: str
    env: dict[str, str]
    timeout_s: float
    keep: bool
    tmp: Path
    archives_from_web: bool

    def service(self, *, workers: int, students: int, **env: str) -> Service:
        return Service.start(self.tmp, pg_url=self.pg_url, redis_url=self.redis_url, workers=workers,
                             students=students, sandbox=self.sandbox, extra_env={**self.env, **env},
                             archives_from_web=self.archives_from_web)


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Audit:
    """What happened to a set of uploads, from the client's answers and the database's rows."""

    accepted: int
    refused: Counter[int]  # HTTP status -> count (0: no answer)
    statuses: Counter[str]
    lost: list[int]  # accepted, but no row, or still queued/running
    no_result: list[int]  # final status but no result row
    twice: list[int]  # more than one result row
    reruns: int  # started more than once, recorded once
    unacknowledged: int  # rows in the database no 202 answered for (a lost answer)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.no_result or self.twice or self.unacknowledged)


def audit(uploads: Sequence[Upload], rows: dict[int, Row], *, ignore: set[int]) -> Audit:
    ids = [u.submission_id for u in uploads if u.status == 202 and u.submission_id is not None]
    mine = {i: rows[i] for i in ids if i in rows}
    return Audit(
        accepted=len(ids),
        refused=Counter(u.status for u in uploads if u.status != 202),
        statuses=Counter(r.status for r in mine.values()),
        lost=[i for i in ids if i not in mine or mine[i].status in PENDING],
        no_result=[i for i, r in mine.items() if r.status not in PENDING and r.results == 0],
        twice=[i for i, r in mine.items() if r.results > 1],
        reruns=sum(r.attempts > 1 for r in mine.values()),
        unacknowledged=len(set(rows) - set(ids) - ignore),
    )


def report_problems(service: Service, what: str) -> None:
    """Warnings in the logs, dead workers and their logs; all logs are kept on disk with --keep."""
    warnings = service.log_warnings()
    if warnings:
        print(f"  {what}: {len(warnings)} warning/error lines in the logs, the first ones:")
        for line in warnings[:5]:
            print(f"    {line[:200]}")
    # The bench's submissions are either graded or refused at intake (warm-up): any other final
    # status is a problem of the service, shown with its message.
    odd = service.messages({"grader_fault", "crashed", "timed_out", "out_of_memory"})
    if odd:
        print(f"  PROBLEM: {what}: {len(odd)} submission(s) ended neither graded nor invalid:")
        for sub_id, (status, message) in sorted(odd.items())[:5]:
            print(f"    #{sub_id} {status}: {message[:300]}")
    dead = service.dead_workers()
    if dead:
        print(f"  PROBLEM: {what}: worker process(es) {dead} exited during the run")
        for i in dead:
            print(f"  --- worker-{i}.log\n{service.log_tail(f'worker-{i}.log')}")


# --------------------------------------------------------------------------- phases


def send_all(service: Service, bodies: Sequence[tuple[str, bytes]], count: int, *, students: int,
             offsets: Sequence[float] | None = None, threads: int = 8) -> tuple[float, list[Upload]]:
    """Upload ``count`` submissions (cycling ``bodies``), upload i from student i % ``students``;
    at ``offsets`` seconds from now if given, else as fast as ``threads`` clients can.
    Returns when it started, and the uploads."""
    start = time.time()

    def one(i: int) -> Upload:
        if offsets is not None:
            pause(start + offsets[i] - time.time())
        name, body = bodies[i % len(bodies)]
        return service.upload(body, student=i % students, filename=f"{name}-{i}.zip")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return start, list(pool.map(one, range(count)))


def scaling(opts: Options, bodies: Sequence[tuple[str, bytes]], warm: bytes, *, count: int,
            worker_counts: Sequence[int], cores: int, share_cores: bool, sandbox_cpus: float) -> bool:
    print(f"\n1. throughput scaling: {count} submissions uploaded at once, to each number of workers "
          f"(ideal: linear up to {cores} cores, flat beyond)")
    if share_cores:
        print("   each run's sandboxes share the cores: GRADER_SANDBOX_CPUS = max(1, cores // workers)")
    print(f"{'workers':>8}{'wall s':>9}{'subs/min':>10}{'run s p50':>11}{'speed-up':>10}{'ideal':>7}"
          f"{'of ideal':>10}  checks")
    base: float | None = None
    ok = True
    for k in worker_counts:
        share = {"GRADER_SANDBOX_CPUS": str(max(1, cores // k))} if share_cores else {}
        service = opts.service(workers=k, students=count, **share)
        try:
            service.warm_up(warm)
            warm_ids = set(service.rows())
            _, uploads = send_all(service, bodies, count, students=count)
            ids = [u.submission_id for u in uploads if u.submission_id is not None]
            rows = service.wait_done(ids, timeout_s=opts.timeout_s)
            a = audit(uploads, rows, ignore=warm_ids)
            done = [rows[i] for i in ids if i in rows and rows[i].finished is not None]
            wall = max(r.finished for r in done if r.finished) - min(u.sent for u in uploads) if done else 0
            rate = len(done) / (wall / 60) if wall > 0 else 0.0
            runs = [r.finished - r.started for r in done if r.finished and r.started]
            base = base or rate
            ideal = min(k, cores) / min(worker_counts[0], cores)
            speed_up = rate / base if base else 0.0
            clean = a.clean and a.accepted == count and not service.dead_workers()
            ok = ok and clean
            checks = "ok" if clean else f"PROBLEM: {a}"
            print(f"{k:>8}{wall:>9.1f}{rate:>10.2f}{statistics.median(runs) if runs else 0:>11.1f}"
                  f"{speed_up:>10.2f}{ideal:>7.2f}{speed_up / ideal:>10.0%}  {checks}", flush=True)
            report_problems(service, f"{k} workers")
        finally:
            service.close(keep_files=opts.keep)
    print("   (wall: first upload sent -> last result recorded; run s: started -> finished, per submission)")
    crowded = [k for k in worker_counts if k * sandbox_cpus > cores]
    if crowded and not share_cores:
        print(f"   (with {', '.join(map(str, crowded))} worker processes the sandboxes ask for more than "
              f"the {cores} cores, {sandbox_cpus:g} CPUs each; --share-cores sets GRADER_SANDBOX_CPUS "
              "to share them)")
    return ok


def latency(opts: Options, body: bytes, *, count: int, workers: int, gaps: tuple[float, float],
            seed: int) -> bool:
    print(f"\n2. queue latency: {count} uploads one at a time to {workers} idle worker(s), "
          f"{gaps[0]:g}-{gaps[1]:g} s after the previous one finished")
    rng = random.Random(seed)
    service = opts.service(workers=workers, students=count)
    lat: list[float] = []  # 202 received -> started
    server: list[float] = []  # row created (the upload accepted in the web app) -> started
    request: list[float] = []
    try:
        service.warm_up(body)
        for i in range(count):
            pause(rng.uniform(*gaps))
            up = service.upload(body, student=i, filename=f"latency-{i}.zip")
            if up.submission_id is None:
                print(f"  PROBLEM: upload {i} refused: HTTP {up.status} {up.message}")
                continue
            row = service.wait_done([up.submission_id], timeout_s=120, poll_s=0.02)[up.submission_id]
            if row.started is None:
                print(f"  PROBLEM: submission {row.id} not started within 120 s")
                continue
            lat.append(row.started - up.answered)
            server.append(row.started - row.created)
            request.append(up.answered - up.sent)
        report_problems(service, "latency")
    finally:
        service.close(keep_files=opts.keep)
    if len(lat) < 2:
        print("  too few samples")
        return False
    for label, values in (("202 received -> started", lat), ("upload accepted -> started", server)):
        p99 = statistics.quantiles(values, n=100, method="inclusive")[98]
        met = "met" if p99 < TARGET_LATENCY_S else "MISSED"
        print(f"   {label:<27}: median {statistics.median(values):6.3f} s, p99 {p99:6.3f} s, "
              f"max {max(values):6.3f} s, min {min(values):6.3f} s  (target p99 < {TARGET_LATENCY_S:g} s: "
              f"{met})")
    print("   (accepted: the submission row's created_at, before the commit and the enqueue; "
          "negative: grading started before the 202 reached the client)")
    print(f"   upload request -> 202: median {statistics.median(request):.3f} s"
          + (f"; with {len(lat)} samples p99 is close to the maximum" if len(lat) < 100 else ""))
    print("   (zips the worker's intake refuses within a second, so the workers are idle again at once;"
          " when grading starts does not depend on what was uploaded)")
    return len(lat) == count


TARGET_BOARD_MS = 50.0  # the leaderboard page's p99 while the rush runs


class BoardProbe:
    """Loads the leaderboard page (``GET /``, as a browser does) every ``every_s`` in a thread
    while the rush runs, timing each answer on this machine's clock."""

    def __init__(self, url: str, every_s: float = 0.25) -> None:
        self.url, self.every_s = url, every_s
        self.times: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="board-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(f"{self.url}/", timeout=30) as response:
                    response.read()
                self.times.append(time.perf_counter() - started)
            except (OSError, http.client.HTTPException):
                self.failures += 1
            self._stop.wait(self.every_s)

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        if not self.times:
            return f"   leaderboard page during the rush: no answer ({self.failures} failures)  <- PROBLEM"
        ms = sorted(1000 * t for t in self.times)
        p99 = statistics.quantiles(ms, n=100, method="inclusive")[98] if len(ms) > 1 else ms[0]
        met = "met" if p99 < TARGET_BOARD_MS else "MISSED"
        return (f"   leaderboard page (GET /) during the rush: {len(ms)} loads, median "
                f"{statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms, "
                f"{self.failures} failures "
                f"(target p99 < {TARGET_BOARD_MS:g} ms: {met})")


def rush(opts: Options, bodies: Sequence[tuple[str, bytes]], warm: bytes, *, count: int, window_s: float,
         workers: int, per_student: int, seed: int, baseline_s: float | None = None) -> bool:
    students = math.ceil(count / per_student)
    spec = load_assignment(Settings.from_env().assignment_path)
    print(f"\n3. deadline rush: {count} uploads at random moments within {window_s:g} s, from {students} "
          f"students ({per_student} each), to {workers} workers")
    rng = random.Random(seed)
    offsets = sorted(rng.uniform(0, window_s) for _ in range(count))
    service = opts.service(workers=workers, students=students)
    try:
        rate = service.settings.upload_rate_count, service.settings.upload_rate_window_s
        if per_student > spec.upload_budget or per_student > rate[0]:
            print(f"   NOTE: {per_student} uploads per student exceed the upload budget "
                  f"({spec.upload_budget}) or the rate limit ({rate[0]} per {rate[1]:g} s): "
                  "expect refusals (LEADERBOARD_UPLOAD_RATE_COUNT, --per-student)")
        service.warm_up(warm)
        warm_ids = set(service.rows())
        probe = BoardProbe(service.url)
        start, uploads = send_all(service, bodies, count, students=students, offsets=offsets,
                                  threads=min(64, count))
        last_sent = max(u.sent for u in uploads)
        late = max(u.sent - (start + o) for u, o in zip(uploads, offsets, strict=True))
        ids = [u.submission_id for u in uploads if u.submission_id is not None]
        rows = service.wait_done(ids, timeout_s=opts.timeout_s)
        board_line = probe.stop()
        a = audit(uploads, rows, ignore=warm_ids)
        finished = [rows[i].finished for i in ids if i in rows and rows[i].finished]
        first = min(u.sent for u in uploads)
        print(f"   uploads: {a.accepted} accepted (HTTP 202) in {last_sent - first:.0f} s"
              + (f", refused {dict(a.refused)} (HTTP status: count; 0 = no answer)" if a.refused else "")
              + f"; the client fell behind its schedule by at most {late:.1f} s")
        print(f"   database: {sum(a.statuses.values())} of them with a row, final statuses "
              f"{dict(sorted(a.statuses.items()))}; {len(a.lost)} lost or never finished, "
              f"{len(a.no_result)} without a result row, {len(a.twice)} with more than one, "
              f"{a.unacknowledged} rows without a 202; {a.reruns} started more than once (recorded once)")
        if finished:
            end = max(finished)
            print(f"   drained {end - first:.0f} s after the first upload, {end - last_sent:.0f} s after "
                  f"the last ({len(finished) / ((end - first) / 60):.1f} submissions/min overall)")
            if baseline_s:
                cores = os.cpu_count() or 1
                ideal = len(finished) * baseline_s / cores
                print(f"   ideal drain: {len(finished)} x {baseline_s:g} s (warm baseline) / {cores} cores = "
                      f"{ideal:.0f} s; this run took {(end - first) / ideal:.2f} x the ideal")
        print(board_line)
        report_problems(service, "rush")
        if a.lost:
            print(f"   PROBLEM: not finished within {opts.timeout_s:.0f} s: {a.lost[:20]}")
        ok = a.clean and a.accepted == count and not a.refused and not service.dead_workers()
        graded = a.statuses.get("graded", 0) == a.accepted
        print(f"   verdict: {'all graded' if graded else 'all final' if ok else 'NOT all final'}, "
              f"{'none' if not a.lost else len(a.lost)} lost, "
              f"{'none' if not a.twice else len(a.twice)} double-recorded"
              + ("" if ok else "  <- PROBLEM"))
        return ok
    finally:
        service.close(keep_files=opts.keep)


# --------------------------------------------------------------------------- main


def submissions(settings: Settings, full: bool) -> tuple[list[tuple[str, bytes]], str]:
    """The zips to upload, and a line describing them."""
    if not full:
        return [(f"tiny{seed}", tiny_good_zip(seed)) for seed in range(8)], (
            "tiny (the reference NumPy layers, tiny untrained nets; --full for the demo's samples)")
    paths = [settings.home / "demo" / f"{name}.zip" for name in SAMPLES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        sys.exit(f"{', '.join(missing)} missing: run `.venv/bin/grader demo --no-serve` first")
    size = sum(p.stat().st_size for p in paths) / len(paths) / 2**20
    return [(p.stem, p.read_bytes()) for p in paths], (
        f"the demo's samples, cycled: {', '.join(SAMPLES)} ({size:.0f} MiB each on average)")


def counts(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=int, default=24, help="uploads per scaling run")
    parser.add_argument("--workers", type=counts, default=[1, 2, 4], help="worker processes per scaling run")
    parser.add_argument("--share-cores", action="store_true",
                        help="scaling: give each sandbox cores // workers CPUs (GRADER_SANDBOX_CPUS)")
    parser.add_argument("--latency", type=int, default=60, help="latency samples")
    parser.add_argument("--latency-workers", type=int, default=2)
    parser.add_argument("--gap", type=float, nargs=2, default=(0.5, 4.0), metavar=("MIN_S", "MAX_S"),
                        help="idle time before each latency upload, drawn uniformly")
    parser.add_argument("--rush", type=int, default=200, help="uploads in the deadline rush")
    parser.add_argument("--window", type=float, default=120.0, help="seconds the rush's uploads spread over")
    parser.add_argument("--rush-workers", type=int, default=2)
    parser.add_argument("--per-student", type=int, default=2, help="rush uploads per student")
    parser.add_argument("--full", action="store_true", help="upload the demo's samples, not the tiny one")
    parser.add_argument("--warm-baseline-s", type=float,
                        help="the warm baseline of bench_overhead.py: the rush prints its ideal drain time")
    parser.add_argument("--phases", default="scaling,latency,rush", help="which to run, comma-separated")
    parser.add_argument("--queue", choices=("redis", "sqlite"), default="redis",
                        help="sqlite: Huey's SQLite queue file instead of Redis (one machine only)")
    parser.add_argument("--archives", choices=("folder", "web"), default="folder",
                        help="web: workers download each archive from the web app (LEADERBOARD_ARCHIVE_URL)")
    parser.add_argument("--database-url", default=os.environ.get("GRADER_TEST_POSTGRES_URL", DEFAULT_PG))
    parser.add_argument("--redis-url", default=os.environ.get("GRADER_TEST_REDIS_URL", DEFAULT_REDIS))
    parser.add_argument("--sandbox", default=os.environ.get("GRADER_SANDBOX", "bwrap"),
                        choices=("bwrap", "docker"))
    parser.add_argument("--env", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                        help="a setting for the web app and the workers (repeatable)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for a run to drain")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep each run's folder (logs) under /tmp")
    args = parser.parse_args()
    phases = {p.strip() for p in args.phases.split(",")}
    extra = dict(args.env)

    settings = Settings.from_env()
    spec = load_assignment(settings.assignment_path)
    ensure_hidden_data(settings, spec, echo=lambda _line: None)
    bodies, described = submissions(settings, args.full)
    invalid = late_invalid_zip()  # taken at upload, refused by the worker's intake at once
    usable = available_cores()
    cpus = os.environ.get("GRADER_SANDBOX_CPUS") or extra.get("GRADER_SANDBOX_CPUS")
    queue = args.redis_url if args.queue == "redis" else "Huey's SQLite file"
    print("bench_workers: real `grader worker` processes, web app under gunicorn, all on loopback")
    print(machine())
    share = f"{cpus} CPUs (GRADER_SANDBOX_CPUS)" if cpus else f"{spec.limits.cpus:g} CPUs (spec limits.cpus)"
    if args.share_cores:
        share += "; in the scaling runs cores // workers"
    print(f"sandbox: {args.sandbox}; each sandbox may use {share}"
          + f"; database: PostgreSQL ({args.database_url.split('@')[-1]}), queue: {queue}; archives: "
          + ("downloaded from the web app" if args.archives == "web" else "the shared upload folder"))
    print(f"submissions: {described}")
    print("NOTE: figures taken while other work runs on this machine are noise; "
          "compare them only with runs on the same quiet machine.", flush=True)

    def stop(signum: int, _frame: object) -> None:
        STOP.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    started = time.monotonic()
    ok = True
    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    opts = Options(args.database_url, args.redis_url if args.queue == "redis" else "", args.sandbox,
                   extra, args.timeout, args.keep, tmp, args.archives == "web")
    try:
        steps: list[tuple[str, Callable[[], bool]]] = [
            ("scaling", lambda: scaling(opts, bodies, invalid, count=args.submissions,
                                        worker_counts=args.workers, cores=usable,
                                        share_cores=args.share_cores,
                                        sandbox_cpus=float(cpus or spec.limits.cpus))),
            ("latency", lambda: latency(opts, invalid, count=args.latency, workers=args.latency_workers,
                                        gaps=tuple(args.gap), seed=args.seed)),
            ("rush", lambda: rush(opts, bodies, invalid, count=args.rush, window_s=args.window,
                                  baseline_s=args.warm_baseline_s,
                                  workers=args.rush_workers, per_student=args.per_student, seed=args.seed)),
        ]
        for name, step in steps:
            if name in phases and not step():
                ok = False
    except KeyboardInterrupt:
        print("\nstopped; the run's processes, schema and queue are gone")
        return 130
    finally:
        if args.keep:
            print(f"\nlogs kept under {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ntook {time.monotonic() - started:.0f} s; load average {os.getloadavg()[0]:.2f} at the end")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
