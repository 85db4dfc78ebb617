"""Run fuzz targets for a time or a number of executions, and report what they found.

    python fuzz/run.py --list
    python fuzz/run.py TARGET [TARGET ...] --seconds 600      # or: all
    python fuzz/run.py all --seconds 5 --jobs 2               # the CI pass
    python fuzz/run.py session --runs 100000 --engine fallback
    python fuzz/run.py frames --replay build/fuzz/findings/frames/*

Each target runs in a worker process. With atheris installed (``pip install
-e ".[fuzz]"``) the worker is coverage-guided (libFuzzer); without it, a
seeded mutation loop over the corpus takes its place (``--engine fallback``
forces it). Both start from ``fuzz/corpus/<target>/`` and
``fuzz/regressions/<target>/``; new interesting inputs go to
``build/fuzz/corpus/<target>/``.

A *finding* is an input on which the target raised (an exception the parser
does not document, or a broken invariant of :mod:`fuzz.harness`), took
longer than ``--timeout`` (a hang), or used more memory than its budget
(sampled with tracemalloc). The worker does not stop at a finding: it saves
the first input of each distinct signature to ``build/fuzz/findings/<target>/``,
prints its traceback, and goes on. The exit status is 1 when anything was
found, so CI fails on a finding.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.targets import TARGETS  # noqa: E402  (after the path set-up)

FUZZ_DIR = ROOT / "fuzz"
#: Where runs keep their state (generated corpus, findings, stats, logs); --work changes it.
DEFAULT_WORK = ROOT / "build" / "fuzz"
BUILD = DEFAULT_WORK
#: Every this-many executions one runs under tracemalloc, against the memory budget.
MEMORY_SAMPLE = 97
#: Peak Python memory one execution may use: a base plus a multiple of the input size.
MEMORY_BASE = 12 * 1024 * 1024
MEMORY_PER_INPUT_BYTE = 64


def seed_dirs(target: str) -> list[Path]:
    """The committed corpus and regression inputs of ``target``."""
    dirs = [FUZZ_DIR / "corpus" / target, FUZZ_DIR / "regressions" / target]
    return [path for path in dirs if path.is_dir()]


def corpus_files(target: str, *, include_work: bool = False) -> list[Path]:
    """Every input file of ``target``, committed (and, if asked, generated) ones."""
    dirs = seed_dirs(target)
    if include_work:
        dirs.append(BUILD / "corpus" / target)
    return sorted(path for folder in dirs if folder.is_dir() for path in folder.iterdir())


# ----------------------------------------------------------------------------
# Findings


class Hang(Exception):
    """An execution ran past ``--timeout``."""


class OverBudget(Exception):
    """An execution's peak memory exceeded its budget."""


def signature(exc: BaseException) -> str:
    """What findings are grouped by: the broken invariant, or where the exception came from."""
    kind = getattr(exc, "kind", None)
    if isinstance(kind, str):
        return f"Violation:{kind}"
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if "/octoproto/" in f.filename or "/site-packages/" in f.filename]
    if not (inside or frames):
        return type(exc).__name__
    where = (inside or frames)[-1]
    return f"{type(exc).__name__}:{Path(where.filename).name}:{where.lineno}"


@dataclass
class Stats:
    """What one worker did."""

    target: str
    engine: str
    executions: int = 0
    seconds: float = 0.0
    findings: int = 0
    signatures: dict[str, int] = field(default_factory=dict)
    slowest_ms: float = 0.0
    memory_checks: int = 0
    peak_memory: int = 0
    corpus_before: int = 0
    corpus_after: int = 0
    crashed: str = ""  # libFuzzer stopped on its own (a timeout, OOM, signal)


class Recorder:
    """Counts executions, times them, samples memory, and keeps findings."""

    def __init__(self, target: str, engine: str, run: Callable[[bytes], None]) -> None:
        self.stats = Stats(target, engine)
        self._run = run
        self._dir = BUILD / "findings" / target
        self._dir.mkdir(parents=True, exist_ok=True)
        self._stats_file = BUILD / "stats" / f"{target}.json"
        self._stats_file.parent.mkdir(parents=True, exist_ok=True)
        self._started = time.monotonic()
        self._saved_at = 0.0

    def execute(self, data: bytes) -> None:
        """Run the target on one input, recording rather than raising."""
        stats = self.stats
        stats.executions += 1
        sample = stats.executions % MEMORY_SAMPLE == 0
        began = time.perf_counter()
        try:
            if sample:
                self._measured(data)
            else:
                self._run(data)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # everything else is a finding
            self.finding(data, exc)
        elapsed = (time.perf_counter() - began) * 1000
        stats.slowest_ms = max(stats.slowest_ms, elapsed)
        now = time.monotonic()
        if now - self._saved_at > 1.0:
            self.save(now)

    def _measured(self, data: bytes) -> None:
        tracemalloc.start()
        try:
            self._run(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.stats.memory_checks += 1
        self.stats.peak_memory = max(self.stats.peak_memory, peak)
        budget = MEMORY_BASE + MEMORY_PER_INPUT_BYTE * len(data)
        if peak > budget:
            raise OverBudget(f"peak {peak} bytes > budget {budget} for a {len(data)}-byte input")

    def finding(self, data: bytes, exc: BaseException) -> None:
        stats = self.stats
        stats.findings += 1
        sig = signature(exc)
        first = sig not in stats.signatures
        stats.signatures[sig] = stats.signatures.get(sig, 0) + 1
        if first:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", sig)[:80]
            path = self._dir / f"{name}-{hashlib.sha1(data).hexdigest()[:12]}"
            path.write_bytes(data)
            tail = "".join(traceback.format_exception(exc, limit=-6)).rstrip()
            print(f"FINDING {stats.target} {sig} -> {path}\n{tail}", flush=True)
        self.save(time.monotonic())

    def save(self, now: float) -> None:
        self._saved_at = now
        self.stats.seconds = round(now - self._started, 2)
        self._stats_file.write_text(json.dumps(asdict(self.stats)))


@contextlib.contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread if the block runs longer than ``seconds``."""

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"execution ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------
# The fallback engine: a seeded mutation loop


TOKENS = (
    b"\r\n",
    b"\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"Upgrade: websocket\r\n",
    b"Connection: Upgrade\r\n",
    b"Sec-WebSocket-Accept: ",
    b"Sec-WebSocket-Extensions: permessage-deflate",
    b"; server_no_context_takeover",
    b"; client_max_window_bits=",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked\r\n",
    b"Set-Cookie: csrf_token_P5000=",
    b'a["',
    b'a[{"connected":{}}]',
    b'{"reauthRequired":{"reason":"stale"}}',
    b'{"history":{}}',
    b'c[3000,"Go away!"]',
    b'{"name":"octo","session":"',
    b"\x81\x7e",
    b"\x88\x02\x03\xe8",
    b"\xc1",
    b"\x00\x00\xff\xff",
    b"\\ud800",
    b"[[[[[[[[",
    b"1e400",
)
INTERESTING = (0, 1, 0x7E, 0x7F, 0x80, 0xFF, 0x0A, 0x0D, 0x22, 0x5B, 0x7B)


def mutate(rng: random.Random, data: bytes, corpus: list[bytes], max_len: int) -> bytes:
    """One to four stacked libFuzzer-style mutations of ``data``."""
    out = bytearray(data)
    for _ in range(1 + rng.randrange(4)):
        choice = rng.randrange(9)
        pos = rng.randrange(len(out) + 1)
        if choice == 0 and out:
            out[pos % len(out)] ^= 1 << rng.randrange(8)
        elif choice == 1 and out:
            out[pos % len(out)] = (
                rng.choice(INTERESTING) if rng.random() < 0.5 else rng.randrange(256)
            )
        elif choice == 2:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(1 + rng.randrange(8)))
        elif choice == 3 and out:
            del out[pos : pos + 1 + rng.randrange(min(len(out), 64))]
        elif choice == 4 and out:
            start = rng.randrange(len(out))
            out[pos:pos] = out[start : start + 1 + rng.randrange(64)]
        elif choice == 5 and corpus:
            other = rng.choice(corpus)
            cut = rng.randrange(len(other) + 1)
            out = out[:pos] + other[cut:]
        elif choice == 6:
            out[pos:pos] = rng.choice(TOKENS)
        elif choice == 7 and out:
            # Change a decision byte of a program: small values matter most.
            out[pos % len(out)] = rng.randrange(32)
        else:
            out = bytearray(rng.randrange(256) for _ in range(rng.randrange(64)))
    return bytes(out[:max_len])


def fallback_loop(
    recorder: Recorder,
    *,
    target_name: str,
    max_len: int,
    seconds: float | None,
    runs: int | None,
    seed: int,
    timeout: float,
) -> None:
    """Mutate the corpus at random (seeded) until the time or the run count is used up."""
    corpus = [path.read_bytes()[:max_len] for path in corpus_files(target_name, include_work=True)]
    recorder.stats.corpus_before = recorder.stats.corpus_after = len(corpus)
    rng = random.Random(seed)
    deadline = None if seconds is None else time.monotonic() + seconds
    pending = list(corpus) or [b""]  # every seed once, as is, first
    while True:
        if runs is not None and recorder.stats.executions >= runs:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        if pending:
            data = pending.pop(0)
        else:
            data = mutate(rng, rng.choice(corpus) if corpus else b"", corpus, max_len)
        try:
            with alarm(timeout):
                recorder.execute(data)
        except Hang as exc:
            recorder.finding(data, exc)
    recorder.save(time.monotonic())


# ----------------------------------------------------------------------------
# Workers


def worker(args: argparse.Namespace) -> int:
    """Fuzz one target in this process; the parent reads the stats file afterwards."""
    target_name = args.targets[0]
    if args.engine == "atheris":
        return atheris_worker(args, target_name)
    target = TARGETS[target_name]
    recorder = Recorder(target_name, "fallback", target.run)
    fallback_loop(
        recorder,
        target_name=target_name,
        max_len=target.max_len,
        seconds=args.seconds,
        runs=args.runs,
        seed=args.seed,
        timeout=args.timeout,
    )
    return 0


def atheris_worker(args: argparse.Namespace, target_name: str) -> int:
    import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]  # noqa: PLC0415  (optional)

    # The targets were imported uninstrumented (to know what to instrument):
    # drop every module of the packages concerned, and of the targets, and
    # import them again under atheris's instrumentation.
    include = list(TARGETS[target_name].instrument)
    for name in list(sys.modules):
        if name.split(".")[0] in (*include, "fuzz"):
            del sys.modules[name]
    with atheris.instrument_imports(include=include):
        instrumented = importlib.import_module("fuzz.targets")

    target = instrumented.TARGETS[target_name]
    recorder = Recorder(target_name, "atheris", target.run)
    work = BUILD / "corpus" / target_name
    work.mkdir(parents=True, exist_ok=True)
    artifacts = BUILD / "findings" / target_name
    recorder.stats.corpus_before = len(corpus_files(target_name, include_work=True))
    libfuzzer = [
        sys.argv[0],
        str(work),
        *(str(path) for path in seed_dirs(target_name)),
        f"-max_len={target.max_len}",
        f"-timeout={int(args.timeout)}",
        "-rss_limit_mb=2048",
        f"-seed={args.seed or 1}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
    ]
    libfuzzer.append(f"-runs={args.runs}" if args.runs is not None else "")
    if args.seconds is not None:
        libfuzzer.append(f"-max_total_time={max(1, round(args.seconds))}")
    atheris.Setup([arg for arg in libfuzzer if arg], recorder.execute)
    atheris.Fuzz()  # never returns: libFuzzer exits the process
    return 0


# ----------------------------------------------------------------------------
# The parent: start workers, bound them, report


def have_atheris() -> bool:
    return importlib.util.find_spec("atheris") is not None


@dataclass
class Job:
    target: str
    process: subprocess.Popen[bytes]
    started: float
    log: Path
    seconds: float | None
    restart: int


def merge(first: Stats, then: Stats) -> Stats:
    """The stats of a worker and of its restart, as one run."""
    signatures = dict(first.signatures)
    for sig, count in then.signatures.items():
        signatures[sig] = signatures.get(sig, 0) + count
    return Stats(
        target=first.target,
        engine=first.engine,
        executions=first.executions + then.executions,
        seconds=first.seconds + then.seconds,
        findings=first.findings + then.findings,
        signatures=signatures,
        slowest_ms=max(first.slowest_ms, then.slowest_ms),
        memory_checks=first.memory_checks + then.memory_checks,
        peak_memory=max(first.peak_memory, then.peak_memory),
        corpus_before=first.corpus_before,
        corpus_after=then.corpus_after,
        crashed="; ".join(text for text in (first.crashed, then.crashed) if text),
    )


def start_job(
    args: argparse.Namespace, target: str, engine: str, seconds: float | None, restart: int = 0
) -> Job:
    stats_file = BUILD / "stats" / f"{target}.json"
    stats_file.unlink(missing_ok=True)
    log = BUILD / "logs" / f"{target}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", target]
    seed = args.seed + restart  # a restart explores afresh
    command += ["--engine", engine, "--seed", str(seed), "--timeout", str(args.timeout)]
    command += ["--work", str(BUILD)]
    if seconds is not None:
        command += ["--seconds", str(seconds)]
    if args.runs is not None:
        command += ["--runs", str(args.runs)]
    with log.open("ab" if restart else "wb") as stderr:
        process = subprocess.Popen(command, stdout=None, stderr=stderr, cwd=ROOT)
    return Job(target, process, time.monotonic(), log, seconds, restart)


def finish_job(job: Job, engine: str) -> Stats:
    stats_file = BUILD / "stats" / f"{job.target}.json"
    try:
        stats = Stats(**json.loads(stats_file.read_text()))
    except (OSError, ValueError):
        stats = Stats(job.target, engine)
    log = job.log.read_text(errors="replace")
    if engine == "atheris":
        done = re.findall(r"Done (\d+) runs in (\d+) second", log)
        if done:
            stats.executions = max(stats.executions, int(done[-1][0]))
        for artifact in re.findall(r"Test unit written to (\S+)", log):
            stats.findings += 1
            kind = Path(artifact).name.split("-")[0]
            stats.signatures[f"libFuzzer:{kind}"] = stats.signatures.get(f"libFuzzer:{kind}", 0) + 1
            stats.crashed = kind
    if job.process.returncode not in (0, None) and not stats.crashed:
        stats.crashed = f"exit status {job.process.returncode}"
        stats.findings += 1
        stats.signatures["worker-died"] = 1
    stats.corpus_after = len(corpus_files(job.target, include_work=True))
    return stats


def parent(args: argparse.Namespace, targets: list[str]) -> int:
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if have_atheris() else "fallback"
    queue, running = list(targets), list[Job]()
    partial: dict[str, Stats] = {}  # stats of workers that stopped early, by target
    results: list[Stats] = []
    began = time.monotonic()
    while queue or running:
        while queue and len(running) < args.jobs:
            running.append(start_job(args, queue.pop(0), engine, args.seconds))
        time.sleep(0.05)
        for job in list(running):
            if (
                job.seconds is not None
                and time.monotonic() - job.started > job.seconds + args.grace
            ):
                job.process.kill()  # our own child, past its bound
            if job.process.poll() is None:
                continue
            running.remove(job)
            own = finish_job(job, engine)
            left = None if job.seconds is None else job.seconds - own.seconds
            stats = merge(partial.pop(job.target), own) if job.target in partial else own
            # libFuzzer stops at a hang, an OOM or a crash it caught itself:
            # go on for the time that is left (a few times at most).
            if own.crashed and left is not None and left > 5 and job.restart < 5:
                partial[job.target] = stats
                running.append(start_job(args, job.target, engine, left, job.restart + 1))
            else:
                results.append(stats)
    total = time.monotonic() - began
    print(
        f"{'target':18} {'engine':9} {'executions':>11} {'seconds':>8} {'exec/s':>8}"
        f" {'findings':>8} {'unique':>6} {'corpus':>11} {'slowest':>9} {'peak mem':>9}"
    )
    for stats in sorted(results, key=lambda s: targets.index(s.target)):
        rate = stats.executions / stats.seconds if stats.seconds else 0.0
        print(
            f"{stats.target:18} {stats.engine:9} {stats.executions:>11} {stats.seconds:>8.1f}"
            f" {rate:>8.0f} {stats.findings:>8} {len(stats.signatures):>6}"
            f" {f'{stats.corpus_before}->{stats.corpus_after}':>11}"
            f" {stats.slowest_ms:>7.0f}ms {stats.peak_memory / 1e6:>7.1f}MB"
        )
        for sig, count in stats.signatures.items():
            print(f"    {count:>8} x {sig}")
        if stats.crashed:
            log = BUILD / "logs" / f"{stats.target}.log"
            print(f"    stopped early: {stats.crashed} (see {log})")
    print(f"total {total:.1f} s")
    if args.json:
        with open(args.json, "a", encoding="utf-8") as out:
            for stats in results:
                out.write(json.dumps(asdict(stats)) + "\n")
    return 1 if any(stats.findings for stats in results) else 0


def replay(targets: list[str], files: list[str]) -> int:
    """Run each file through each target in this process; report each outcome."""
    status = 0
    for name in targets:
        for file in files:
            data = Path(file).read_bytes()
            try:
                TARGETS[name].run(data)
            except Exception as exc:
                status = 1
                print(f"{name} {file}: FINDING {signature(exc)}")
                traceback.print_exception(exc, limit=-8)
            else:
                print(f"{name} {file}: ok")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help="target names, or 'all'")
    parser.add_argument("--list", action="store_true", help="list the targets")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, help="run each target this long")
    budget.add_argument("--runs", type=int, help="run each target this many times")
    parser.add_argument("--engine", choices=("auto", "atheris", "fallback"), default="auto")
    parser.add_argument("--jobs", type=int, default=1, help="targets run in parallel")
    parser.add_argument("--seed", type=int, default=1, help="the fallback's and libFuzzer's seed")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds one input may take")
    parser.add_argument(
        "--grace", type=float, default=60.0, help="seconds past --seconds before a worker is killed"
    )
    parser.add_argument("--json", help="append one JSON line of stats per target to this file")
    parser.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        help="working directory: generated corpus, findings, stats, logs (default build/fuzz)",
    )
    parser.add_argument("--replay", nargs="+", metavar="FILE", help="run these inputs once")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global BUILD  # noqa: PLW0603  (one setting for the whole process)
    BUILD = args.work.resolve()
    if args.worker:
        return worker(args)
    if args.list:
        for target in TARGETS.values():
            print(f"{target.name:18} {target.summary}")
        return 0
    names = list(TARGETS) if args.targets == ["all"] else args.targets
    unknown = [name for name in names if name not in TARGETS]
    if unknown or not names:
        parser.error(f"unknown target(s) {unknown}; known: {', '.join(TARGETS)}, all")
    if args.replay:
        return replay(names, args.replay)
    if args.seconds is None and args.runs is None:
        args.seconds = 10.0
    os.environ.setdefault("PYTHONHASHSEED", "0")
    return parent(args, names)


if __name__ == "__main__":
    sys.exit(main())
