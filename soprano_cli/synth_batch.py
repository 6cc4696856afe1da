"""`soprano synth --jsonl` and `--input-dir`: many outputs from one model load, each streamed to its file.

Every job's sentences join one engine stream, so short files share LM batches. Each sentence's
audio goes to its file as soon as it and the ones before it in that file have ended (a Renderer
per open file), so memory does not grow with a file's length. A job that cannot be done (a bad
line, an unwritable path, nothing to say, undecodable text) fails alone: the others are written,
and one error at the end names each failure.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from soprano_cli.errors import BatchJobsFailedError, InputTextError, InvalidParameterError, OutputError, SopranoError
from soprano_cli.engine.results import WHOLE_SENTENCE
from soprano_cli.synth_single import (Background, EngineChoice, Progress, SynthRequest, open_engine,
                                      print_summary)

log = logging.getLogger(__name__)


@dataclass
class BatchJob:
    """One output to write, from a JSON line or a .txt file."""

    label: str  # where the job came from, for messages: "stdin line 3", a file's path
    number: int = 0  # its place in the input, which orders the failure summary
    output: Path | None = None
    text: str | None = None  # None until read (a folder's files are read as their turn comes)
    source: Path | None = None  # the .txt file to read the text from
    fmt: str | None = None  # the output's audio format, once checked
    error: str | None = None  # why the job failed, once it has
    audio_seconds: float = 0.0  # of the written output
    audio: bytes | None = None  # the finished output, when the batch writes to memory (Ray workers)
    attempts: int = 0  # Ray workers that died while holding it
    first: int = 0  # the engine stream's index of the job's first sentence
    script: object = None  # its text's Script: the pauses its markup asks for
    count: int = 0  # its sentences
    finished: int = 0  # of them, ended (main thread)
    sink: object = None  # the open output file, the encoder over it, and the renderer feeding it (main thread)
    encoder: object = None
    renderer: object = None


def _jobs_from_jsonl(files: list[Path]) -> Iterator[BatchJob]:
    """A job per non-blank line of the files (stdin for none or '-'); a line that is no job is a failed job."""
    from soprano_cli.text_input import iter_input_lines

    for path in files or [Path("-")]:
        yield from _jobs_from_lines(iter_input_lines([path]), "stdin" if str(path) == "-" else str(path))


def _jobs_from_lines(lines: Iterable[str], source: str) -> Iterator[BatchJob]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        label = f"{source} line {number}"
        try:
            job = json.loads(line)
        except ValueError as error:
            yield BatchJob(label, error=f"invalid JSON ({error})")
            continue
        if not isinstance(job, dict) or not isinstance(job.get("text"), str) or not isinstance(job.get("output"), str):
            yield BatchJob(label, error='expected {"text": "...", "output": "path"}')
            continue
        yield BatchJob(label, output=Path(job["output"]), text=job["text"])


def _folder_files(input_dir: Path, output_dir: Path) -> list[Path]:
    if not input_dir.is_dir():
        raise InputTextError(f"no folder at {input_dir}")
    files = sorted(p for p in input_dir.iterdir() if p.suffix.lower() == ".txt" and p.is_file())
    if not files:
        raise InputTextError(f"no .txt files in {input_dir}")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create {output_dir}: {error.strerror or error}") from None
    return files


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputTextError(f"invalid UTF-8 at byte offset {error.start}") from None
    except OSError as error:
        raise InputTextError(f"cannot read it: {error.strerror or error}") from None


def _check_encoder(fmt: str, request: SynthRequest) -> None:
    """Raise if `fmt` cannot be written with the request's rate and sample format."""
    from soprano_cli.audio.formats import open_encoder

    open_encoder(fmt, io.BytesIO(), output_rate=request.sample_rate, sample_format=request.sample_format).close()


class JobBatch:
    """Feeds every job's sentences to one engine stream and routes the chunks to each job's file."""

    def __init__(self, request: SynthRequest, folder_format: str | None, in_memory: bool = False):
        self.request = request
        self.folder_format = folder_format  # --input-dir: every output's format; --jsonl: from each path
        # Each output as bytes in job.audio, not a file: a Ray worker sends them to the driver, which
        # writes them (its paths need not exist on the worker's machine).
        self.in_memory = in_memory
        self.read = 0  # jobs read so far (the source thread counts them)
        self.all_read = False
        self.failed: list[BatchJob] = []
        self.written = 0
        self.audio_seconds = 0.0
        self._owner: dict[int, BatchJob] = {}  # stream index -> job, for sentences not yet ended
        self._open: dict[int, BatchJob] = {}  # jobs with an open output, by id
        self._formats: dict[str, str | None] = {}  # format -> why it cannot be written (None: it can)

    # -- the source: runs on the engine's input thread ----------------------------------------

    def sentences(self, jobs) -> Iterator[str]:
        """Every good job's sentences in order; a job that fails here is set aside with its reason."""
        from soprano_cli.text.script import script_from_text

        index = 0
        for job in jobs:
            self.read += 1
            job.number = self.read
            sentences: list[str] = []
            if job.error is None:
                try:
                    fmt = self.prepare(job)
                    sentences, job.script = script_from_text(job.text, **self.request.sentence_options())
                    if not sentences:
                        raise InputTextError("no text to synthesize")
                    job.fmt = fmt
                except SopranoError as error:
                    job.error = error.message
            job.text = None  # the sentences hold what is needed
            if job.error is not None:
                self.failed.append(job)
                continue
            job.first, job.count = index, len(sentences)
            for sentence in sentences:
                self._owner[index] = job  # before the engine can see the sentence
                index += 1
                yield sentence
        self.all_read = True

    def prepare(self, job: BatchJob) -> str:
        """Read the job's text, check its output (its path too unless in memory); returns its format."""
        from soprano_cli.audio.formats import format_from_path
        from soprano_cli.rendering import check_writable

        if job.source is not None:
            job.text = _read_text(job.source)
        fmt = self.folder_format or format_from_path(job.output)
        if fmt not in self._formats:
            try:
                _check_encoder(fmt, self.request)
                self._formats[fmt] = None
            except SopranoError as error:
                self._formats[fmt] = error.message
        if self._formats[fmt] is not None:
            raise OutputError(self._formats[fmt])
        if not self.in_memory:
            check_writable(job.output)
        return fmt

    # -- the sink: the main thread ----------------------------------------------------------------

    def take(self, chunk) -> None:
        """Route one engine chunk to its job's file; close the file once all its sentences are in."""
        job = self._owner[chunk.sentence]
        if chunk.final:
            del self._owner[chunk.sentence]
        if job.error is None:
            try:
                if job.renderer is None:
                    self._open_output(job)
                job.renderer.take(replace(chunk, sentence=chunk.sentence - job.first))
            except OutputError as error:
                self._fail(job, error.message)
        if chunk.final:
            job.finished += 1
            if job.finished == job.count and job.error is None:
                try:
                    job.renderer.finish()
                except OutputError as error:
                    self._fail(job, error.message)
            if job.finished == job.count and job.error is None:
                self._close(job)
                self.written += 1
                job.audio_seconds = job.renderer.stats.audio_seconds
                self.audio_seconds += job.audio_seconds
                job.renderer = None

    def _open_output(self, job: BatchJob) -> None:
        from soprano_cli.audio.formats import open_encoder
        from soprano_cli.model_facts import SAMPLE_RATE
        from soprano_cli.rendering import Renderer, open_output

        job.sink = _MemoryFile() if self.in_memory else open_output(job.output)
        self._open[id(job)] = job
        job.encoder = open_encoder(job.fmt, job.sink, input_rate=SAMPLE_RATE, output_rate=self.request.sample_rate,
                                   sample_format=self.request.sample_format, seekable=True)
        job.renderer = Renderer(job.encoder, None, shaper=self.request.shaper(job.script))

    def _close(self, job: BatchJob) -> None:
        """Finish the job's file; what it holds stays a valid file (also after a failed write)."""
        self._open.pop(id(job), None)
        try:
            if job.encoder is not None:
                job.encoder.close()
        finally:
            if job.sink is not None:
                job.sink.close()
                if self.in_memory:
                    job.audio = job.sink.data
            job.sink = job.encoder = None

    def _fail(self, job: BatchJob, message: str) -> None:
        job.error = message
        self.failed.append(job)
        job.renderer = None
        try:
            self._close(job)
        except OutputError:
            pass  # the first failure is the one reported

    def close_all(self, interrupted: bool) -> None:
        """Close every file still open; after Ctrl-C each keeps the sentences that had ended."""
        for job in list(self._open.values()):
            try:
                if interrupted and job.renderer is not None:
                    job.renderer.interrupted()
            finally:
                self._close(job)

    def failure(self) -> BatchJobsFailedError:
        return jobs_failed(self.failed, self.written)


class _MemoryFile(io.BytesIO):
    """A seekable output (WAV headers are patched at the end) whose bytes outlive close()."""

    data: bytes | None = None

    def close(self) -> None:
        if not self.closed:
            self.data = self.getvalue()
        super().close()


def jobs_failed(failed: list[BatchJob], written: int, skipped: int = 0) -> BatchJobsFailedError:
    """The error that ends a batch run with failed jobs: counts, then each failure by its place in the input."""
    total = written + skipped + len(failed)
    counts = f"{written} written" + (f", {skipped} skipped as already complete" if skipped else "")
    lines = [f"{len(failed)} of {total} job{'s' if total != 1 else ''} failed ({counts}):"]
    lines += [f"  {job.label}: {job.error}" for job in sorted(failed, key=lambda job: job.number)]
    return BatchJobsFailedError("\n".join(lines))


def batch_jobs(request: SynthRequest, *, jsonl: list[Path] | None, input_dir: Path | None, output_dir: Path | None):
    """(jobs, folder format, total) of a batch run; JSONL jobs are read lazily and their total is None.

    `jsonl` names the JSON Lines files (empty: stdin); None means a folder run.

    A folder's format is checked here, before any model loads; a JSONL job's comes from its path.
    """
    from soprano_cli.audio.formats import check_format

    if jsonl is not None and (input_dir or output_dir):
        raise InvalidParameterError("--jsonl reads jobs from files or stdin; it cannot be combined with --input-dir")
    if jsonl is None and (input_dir is None or output_dir is None):
        raise InvalidParameterError("--input-dir and --output-dir go together")
    if jsonl is not None:
        return _jobs_from_jsonl(jsonl), None, None
    fmt = check_format((request.audio_format or "wav").lower())
    _check_encoder(fmt, request)  # one format for all: a bad combination fails before any work
    files = _folder_files(input_dir, output_dir)
    jobs = (BatchJob(str(path), output=output_dir / f"{path.stem}.{fmt}", source=path) for path in files)
    return jobs, fmt, len(files)


def first_job(jobs, jsonl: list[Path]) -> Iterator[BatchJob]:
    """`jobs` again, after checking there is one: no jobs at all is an input error, as empty text is."""
    first = next(jobs, None)
    if first is None:
        names = [str(path) for path in jsonl if str(path) != "-"]
        where = "on stdin" if not names else f"in {', '.join(names)}"
        raise InputTextError(f"no jobs {where}: the input is empty")
    return itertools.chain([first], jobs)


def run_batch(request: SynthRequest, choice: EngineChoice, params, *, jsonl: list[Path] | None, input_dir: Path | None,
              output_dir: Path | None, start_display=None) -> None:
    """One model load for many outputs: JSON Lines jobs (files or stdin), or a folder of .txt files.

    The display (as for run_single) sees files written out of the jobs known so far: a folder's
    are all known at the start, stdin's as their lines are read. Raises BatchJobsFailedError
    after the run when some jobs failed, naming each.
    """
    jobs, fmt, total = batch_jobs(request, jsonl=jsonl, input_dir=input_dir, output_dir=output_dir)
    batch = JobBatch(request, fmt)
    loading = Background(lambda: open_engine(choice))  # loads while the first job is read
    if total is None:
        jobs = first_job(jobs, jsonl)
    engine = loading.result()

    started = time.perf_counter()
    display = start_display() if start_display else None

    def report() -> None:
        if display is not None:
            known, final = (batch.read, batch.all_read) if total is None else (total, True)
            display.update(Progress("files", batch.written + len(batch.failed), known, final, batch.audio_seconds,
                                    time.perf_counter() - started))

    interrupted = False
    try:
        report()
        for chunk in engine.stream(batch.sentences(jobs), params, WHOLE_SENTENCE, in_order=False):
            batch.take(chunk)
            report()
        report()
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        try:
            batch.close_all(interrupted)
        finally:
            if display is not None:
                display.close()
    if request.verbose:
        print_summary(batch.written, batch.audio_seconds, time.perf_counter() - started)
    if batch.failed:
        raise batch.failure()
