"""`soprano synth --ray`: batch jobs spread over Ray actors, each holding one loaded engine.

The driver (this process) reads the jobs, checks their outputs and skips the complete ones, then
hands the rest to the actors a few at a time; an actor runs each handful as the in-process batch
does (synth_batch.JobBatch, one continuous LM batch) and returns every output as bytes. The driver
writes each to a temporary name and renames it when complete, so an output that exists is whole:
a re-run skips it (--resume) and redoes only what never got there. A job that fails fails alone;
the jobs of an actor that dies go back in the queue for the others (a new actor replaces it).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from soprano_cli.errors import BackendUnavailableError, InvalidParameterError, OutputError, SopranoError
from soprano_cli.engine.results import WHOLE_SENTENCE
from soprano_cli.synth_batch import BatchJob, JobBatch, batch_jobs, first_job, jobs_failed
from soprano_cli.synth_single import Progress, SynthRequest, print_summary

log = logging.getLogger(__name__)

INSTALL_HINT = "--ray needs Ray: pip install 'soprano-cli[ray]'"
# Jobs per actor call: enough short clips to fill the LM batch (16 sentences on a CPU), few enough
# that progress moves in small steps and an actor that dies takes little finished work with it.
JOBS_PER_CALL = 8
CALLS_IN_FLIGHT = 2  # per actor: the next handful is already there when one ends
MAX_ATTEMPTS = 3  # an actor death costs a job one attempt; a job that kills three fails alone
POLL_SECONDS = 0.25  # progress refresh while waiting for actors


@dataclass
class RayOptions:
    """Where and how wide `synth --ray` runs."""

    address: str = "auto"  # 'auto': a running cluster if there is one, else a local one; or host:port
    workers: int | None = None  # actors; None: as many as the cluster's CPUs hold
    cpus_per_worker: float = 1.0  # CPUs Ray reserves for each actor (its torch threads)
    resume: bool = True  # skip outputs that exist (complete: only finished files get their name)


class Worker:
    """A Ray actor's body: one loaded engine that speaks handfuls of jobs to bytes."""

    def __init__(self, config, request: SynthRequest, params, folder_format: str | None):
        from soprano_cli.engine.engine import Engine

        self.request, self.params, self.folder_format = request, params, folder_format
        self.engine = self.error = None
        try:
            self.engine = Engine.load(config)
        except SopranoError as error:  # sent to the driver, which exits with its code
            self.error = error

    def ready(self):
        """(pid, node address, the load's error or None)."""
        import ray

        return os.getpid(), ray.util.get_node_ip_address(), self.error

    def run(self, jobs: list[tuple[str, str, str]]) -> list[tuple[str | None, bytes | None, float]]:
        """(label, output path, text) each -> (error or None, the output's bytes, audio seconds), in order."""
        batch = JobBatch(self.request, self.folder_format, in_memory=True)
        items = [BatchJob(label, output=Path(output), text=text) for label, output, text in jobs]
        try:
            for chunk in self.engine.stream(batch.sentences(items), self.params, WHOLE_SENTENCE, in_order=False):
                batch.take(chunk)
        finally:
            batch.close_all(False)
        return [(job.error, job.audio, job.audio_seconds) for job in items]


def import_ray():
    """The ray module, or exit 9 with the install hint."""
    try:
        import ray
    except ImportError:
        raise BackendUnavailableError(INSTALL_HINT) from None
    return ray


def write_complete(path: Path, data: bytes) -> None:
    """Write `data` to a temporary name beside `path`, then rename it: `path` never holds part of a file."""
    part = path.with_name(f".{path.name}.part")
    try:
        with open(part, "wb") as file:
            file.write(data)
        os.replace(part, path)
    except OSError as error:
        part.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None


@dataclass
class _Actor:
    handle: object
    number: int
    pid: int = 0
    node: str = ""
    jobs: int = 0  # written by it
    audio_seconds: float = 0.0
    calls: dict = field(default_factory=dict)  # object ref -> its jobs


def _connect(ray, address: str, verbose: bool) -> None:
    # Ray's own logs stay out of the user's stderr; with -v the actors' warnings come through.
    options = dict(log_to_driver=verbose, logging_level=logging.ERROR, include_dashboard=False)
    if address == "auto":
        ray.init(**options)  # RAY_ADDRESS or the latest local cluster, else a new local one
        return
    try:
        ray.init(address=address, **options)
    except ConnectionError as error:
        raise BackendUnavailableError(f"no Ray cluster at {address}: {error}") from None


def _start_actors(ray, count: int, start, first_number: int = 1) -> list[_Actor]:
    """`count` actors with their engines loaded; a load's own error (no such model...) is raised as it is."""
    actors = [_Actor(start(), first_number + i) for i in range(count)]
    try:
        answers = ray.get([actor.handle.ready.remote() for actor in actors])
    except ray.exceptions.RayActorError as error:  # e.g. soprano_cli missing on a node
        raise BackendUnavailableError(f"a Ray worker did not start: {str(error).splitlines()[0]}") from None
    for actor, (pid, node, error) in zip(actors, answers):
        if error is not None:
            raise error
        actor.pid, actor.node = pid, node
        log.info("Ray worker %d: pid %d on %s", actor.number, pid, node)
    return actors


def _worker_count(ray, options: RayOptions, jobs: int) -> int:
    """--ray-workers, else as many as the cluster's CPUs hold; never more than the jobs' handfuls."""
    cpus = ray.cluster_resources().get("CPU", 0)
    workers = options.workers or max(1, int(cpus // options.cpus_per_worker))
    if workers * options.cpus_per_worker > cpus:  # Ray would wait for them forever
        raise InvalidParameterError(f"the Ray cluster has {cpus:g} CPUs, fewer than {workers} workers × "
                                    f"{options.cpus_per_worker:g} CPUs each")
    return min(workers, -(-jobs // JOBS_PER_CALL))  # no actor loads a model for nothing


def _feed(actors: list[_Actor], queue: deque) -> None:
    """Give every actor up to CALLS_IN_FLIGHT handfuls, round by round so that a short queue is shared.

    A handful shrinks when the queue is short: the last jobs spread over every actor, not onto one.
    """
    for _ in range(CALLS_IN_FLIGHT):
        for actor in actors:
            if not queue:
                return
            if len(actor.calls) >= CALLS_IN_FLIGHT:
                continue
            size = min(JOBS_PER_CALL, -(-len(queue) // (len(actors) * CALLS_IN_FLIGHT)))
            batch = [queue.popleft() for _ in range(size)]
            call = actor.handle.run.remote([(job.label, str(job.output), job.text) for job in batch])
            actor.calls[call] = batch


def run_ray_batch(request: SynthRequest, config, params, options: RayOptions, *, jsonl: list[Path] | None,
                  input_dir: Path | None, output_dir: Path | None, start_display=None) -> None:
    """The batch run of synth_batch.run_batch, on Ray actors; raises BatchJobsFailedError naming failed jobs."""
    ray = import_ray()
    if options.cpus_per_worker <= 0 or (options.workers is not None and options.workers < 1):
        raise InvalidParameterError("--ray-workers and --ray-cpus-per-worker must be positive")
    jobs, fmt, total = batch_jobs(request, jsonl=jsonl, input_dir=input_dir, output_dir=output_dir)
    if total is None:
        jobs = first_job(jobs, jsonl)
    checker = JobBatch(request, fmt)
    queue: deque[BatchJob] = deque()
    failed: list[BatchJob] = []
    skipped = 0
    for number, job in enumerate(jobs, start=1):
        job.number = number
        if job.error is None and options.resume and job.output.is_file():
            skipped += 1
            continue
        if job.error is None:
            try:
                checker.prepare(job)  # reads a folder's file; checks the format and that the path is writable
            except SopranoError as error:
                job.error = error.message
        (failed if job.error is not None else queue).append(job)
    total = number
    log.info("%d jobs: %d to do, %d already complete, %d failed before starting", total, len(queue), skipped,
             len(failed))

    if not queue:  # nothing left to do: no cluster needed
        return _run(ray, request, config, params, options, fmt, queue, failed, skipped, total, start_display)
    _connect(ray, options.address, request.verbose)
    try:
        _run(ray, request, config, params, options, fmt, queue, failed, skipped, total, start_display)
    finally:
        ray.shutdown()  # disconnects; stops the local cluster if this run started it


def _run(ray, request, config, params, options, fmt, queue, failed, skipped, total, start_display):
    workers = _worker_count(ray, options, len(queue)) if queue else 0
    actor_class = ray.remote(num_cpus=options.cpus_per_worker, max_restarts=0)(Worker)

    def start():
        return actor_class.remote(config, request, params, fmt)

    written, audio_seconds, replacements = 0, 0.0, 0
    started = time.perf_counter()
    display = start_display() if start_display else None

    def report() -> None:
        if display is not None:
            display.update(Progress("files", written + skipped + len(failed), total, True, audio_seconds,
                                    time.perf_counter() - started))

    try:
        report()
        actors = _start_actors(ray, workers, start) if queue else []
        started = time.perf_counter()  # speed as the in-process batch counts it: from loaded models on
        retired: list[_Actor] = []
        while queue or any(actor.calls for actor in actors):
            _feed(actors, queue)
            owner = {call: actor for actor in actors for call in actor.calls}
            ready, _ = ray.wait(list(owner), num_returns=1, timeout=POLL_SECONDS)
            for call in ready:
                actor = owner[call]
                batch = actor.calls.pop(call)
                try:
                    results = ray.get(call)
                except ray.exceptions.RayActorError as error:
                    # The actor died (killed, out of memory, its node gone): its jobs go to the others.
                    log.warning("Ray worker %d (pid %d on %s) died; its jobs go to another: %s", actor.number,
                                actor.pid, actor.node, str(error).splitlines()[0])
                    actors.remove(actor)
                    retired.append(actor)
                    for lost in list(actor.calls.values()) + [batch]:
                        for job in lost:
                            job.attempts += 1
                            if job.attempts >= MAX_ATTEMPTS:
                                job.error = f"its Ray worker died {job.attempts} times"
                                failed.append(job)
                            else:
                                queue.appendleft(job)
                    actor.calls.clear()
                    if replacements < workers:  # bounded: a job that kills every actor cannot loop forever
                        replacements += 1
                        actors += _start_actors(ray, 1, start, first_number=workers + replacements)
                    elif not actors:
                        for job in queue:
                            job.error = "every Ray worker died"
                        failed.extend(queue)
                        queue.clear()
                    continue
                except ray.exceptions.RayTaskError as error:
                    reason = getattr(error.cause, "message", None) or str(error.cause or error).splitlines()[0]
                    results = [(reason, None, 0.0)] * len(batch)
                for job, (error, data, seconds) in zip(batch, results):
                    if error is None:
                        try:
                            write_complete(job.output, data)
                        except OutputError as write_error:
                            error = write_error.message
                    if error is not None:
                        job.error = error
                        failed.append(job)
                        continue
                    written += 1
                    audio_seconds += seconds
                    actor.jobs += 1
                    actor.audio_seconds += seconds
                    log.info("Ray worker %d: %s (%.1f s of audio)", actor.number, job.output, seconds)
            report()
        report()
    finally:
        if display is not None:
            display.close()
    for actor in sorted(actors + retired, key=lambda actor: actor.number):
        log.info("Ray worker %d (pid %d on %s): %d jobs, %.1f s of audio", actor.number, actor.pid, actor.node,
                 actor.jobs, actor.audio_seconds)
    if request.verbose:
        print_summary(written, audio_seconds, time.perf_counter() - started)
        print(f"soprano: {written} done, {skipped} skipped, {len(failed)} failed", file=sys.stderr, flush=True)
    if failed:
        raise jobs_failed(failed, written, skipped)
