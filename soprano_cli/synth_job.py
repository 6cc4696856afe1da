"""What `soprano synth` does, as library functions: one text to one output, or batches of files."""

from __future__ import annotations

import itertools
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from soprano_cli.errors import InputTextError, InvalidParameterError, OutputError

log = logging.getLogger(__name__)

WHOLE_SENTENCE = 1 << 30  # chunk size that makes the streamer decode each sentence in one pass


@dataclass
class SynthRequest:
    """Output and text options of one `synth` run."""

    text: str | None = None  # None: read stdin
    output: Path | None = None
    audio_format: str | None = None
    sample_rate: int | None = None
    sample_format: str = "s16"
    sentence_silence: float = 0.0
    captions: Path | None = None
    streaming: bool = False
    play: bool = False
    audio_device: str | None = None
    chunk_frames: int = 1
    normalize: bool = True
    lines: bool = False
    min_seconds: float = 2.0
    max_seconds: float = 30.0
    quiet: bool = False
    verbose: bool = False

    def sentence_options(self) -> dict:
        return dict(normalize=self.normalize, lines_are_chunks=self.lines,
                    min_seconds=self.min_seconds, max_seconds=self.max_seconds)


@dataclass
class EngineChoice:
    """Where synthesis runs: a daemon when one answers, else an engine loaded here."""

    config: object  # EngineConfig
    server: str | None = None  # URL, 'unix:/path', 'none', or None for the default socket
    explicit_model: bool = False


def open_engine(choice: EngineChoice):
    """A running daemon's RemoteEngine if one serves this model, else a freshly loaded Engine."""
    if choice.server != "none":
        try:
            from soprano_cli.server.client import connect_daemon
        except ImportError:  # the server package is optional at runtime
            connect_daemon = None
        if connect_daemon is not None:
            remote = connect_daemon(choice.server, model=choice.config.model if choice.explicit_model else None)
            if remote is not None:
                log.info("using the daemon at %s", remote.url)
                return remote
    from soprano_cli.engine.engine import Engine

    return Engine.load(choice.config)


class _Background:
    """Runs one function on a thread; result() waits and re-raises its error."""

    def __init__(self, function):
        self._result = self._error = None
        self._thread = threading.Thread(target=self._run, args=(function,), daemon=True, name="soprano-load")
        self._thread.start()

    def _run(self, function):
        try:
            self._result = function()
        except BaseException as error:  # re-raised in the caller's thread
            self._error = error

    def result(self):
        while self._thread.is_alive():
            self._thread.join(0.1)  # short joins keep Ctrl-C responsive
        if self._error is not None:
            raise self._error
        return self._result


def output_format(request: SynthRequest) -> str:
    """--format, else the -o extension, else wav."""
    from soprano_cli.audio.formats import check_format, format_from_path

    if request.audio_format:
        return check_format(request.audio_format.lower())
    return format_from_path(request.output) if request.output else "wav"


def _check_output_options(request: SynthRequest, fmt: str) -> None:
    """Fail on bad output options before any model loads."""
    from soprano_cli.audio.formats import open_encoder

    if request.captions is not None:
        from soprano_cli.audio.captions import captions_format_from_path

        captions_format_from_path(request.captions)
    from soprano_cli.synthesis import check_writable

    for path in (request.output, request.captions):  # found unwritable before, not after, synthesis
        if path is not None:
            check_writable(path)
    # An encoder over a throwaway buffer validates rate, sample format and codec availability.
    import io

    open_encoder(fmt, io.BytesIO(), output_rate=request.sample_rate, sample_format=request.sample_format)


def run_single(request: SynthRequest, choice: EngineChoice, params) -> None:
    """Speak the request's text (or stdin) to its output, streaming as configured."""
    from soprano_cli.cli.textio import iter_input_lines
    from soprano_cli.synthesis import Renderer, open_output
    from soprano_cli.text.pipeline import sentences_from_lines

    fmt = output_format(request)
    _check_output_options(request, fmt)
    to_terminal = request.output is None and sys.stdout.isatty()
    play = request.play or (request.streaming and to_terminal)
    if to_terminal and not play:
        raise OutputError("refusing to write audio to a terminal; use -o FILE, a pipe, or --streaming to play it")

    loading = _Background(lambda: open_engine(choice))  # loads while the first sentence is read
    if request.text is not None:
        source = [request.text]
    else:
        if sys.stdin.isatty() and not request.quiet:
            print("soprano: reading text from stdin; end it with Ctrl-D", file=sys.stderr, flush=True)
        source = iter_input_lines([])
    sentences = sentences_from_lines(source, **request.sentence_options())
    first = next(sentences, None)
    if first is None:
        raise InputTextError("no text to synthesize: the input is empty")
    engine = loading.result()

    sink = None if to_terminal else open_output(request.output) if request.output else sys.stdout.buffer
    encoder = player = None
    completed = False
    try:
        if sink is not None:
            from soprano_cli.audio.formats import open_encoder

            encoder = open_encoder(fmt, sink, input_rate=engine.sample_rate, output_rate=request.sample_rate,
                                   sample_format=request.sample_format)
        if play:
            from soprano_cli.audio.playback import Player

            player = Player(engine.sample_rate, 1, request.audio_device)
        live = request.streaming or play
        renderer = Renderer(encoder, player, request.sentence_silence)
        chunks = engine.stream(itertools.chain([first], sentences), params,
                               request.chunk_frames if live else WHOLE_SENTENCE)
        stats = renderer.feed(chunks)
        completed = True
    finally:
        # Also on Ctrl-C: the file written so far is closed into a valid, shorter one.
        if encoder is not None:
            encoder.close()
        if request.output is not None and sink is not None:
            sink.close()
        if player is not None:
            player.close() if completed else player.abort()
    if request.captions is not None:
        from soprano_cli.audio.captions import write_captions

        write_captions(request.captions, stats.cues)
    if request.verbose:
        _summary(1, stats.audio_seconds, stats.elapsed, first_audio=stats.first_audio_seconds)


def _summary(files: int, audio_seconds: float, elapsed: float, first_audio: float | None = None) -> None:
    speed = audio_seconds / elapsed if elapsed > 0 else 0.0
    line = f"{files} file{'s' if files != 1 else ''}, {audio_seconds:.1f} s of audio in {elapsed:.2f} s ({speed:.1f}x real time)"
    if first_audio is not None:
        line += f", first audio after {first_audio * 1000:.0f} ms"
    print(f"soprano: {line}", file=sys.stderr, flush=True)


# -- batch jobs ------------------------------------------------------------------------------


@dataclass
class _Job:
    text: str
    output: Path
    label: str  # where the job came from, for messages


def _jobs_from_jsonl(stdin) -> Iterator[_Job]:
    from soprano_cli.cli.textio import iter_input_lines

    for number, line in enumerate(iter_input_lines([]), start=1):
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except ValueError as error:
            raise InputTextError(f"stdin line {number}: invalid JSON ({error})") from None
        if not isinstance(job, dict) or not isinstance(job.get("text"), str) or not isinstance(job.get("output"), str):
            raise InputTextError(f'stdin line {number}: expected {{"text": "...", "output": "path"}}')
        yield _Job(job["text"], Path(job["output"]), f"stdin line {number}")


def _jobs_from_folder(input_dir: Path, output_dir: Path, fmt: str) -> Iterator[_Job]:
    if not input_dir.is_dir():
        raise InputTextError(f"no folder at {input_dir}")
    files = sorted(p for p in input_dir.iterdir() if p.suffix.lower() == ".txt" and p.is_file())
    if not files:
        raise InputTextError(f"no .txt files in {input_dir}")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create {output_dir}: {error.strerror or error}") from None
    for path in files:
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise InputTextError(f"{path}: invalid UTF-8 at byte offset {error.start}") from None
        except OSError as error:
            raise InputTextError(f"cannot read {path}: {error.strerror or error}") from None
        yield _Job(text, output_dir / f"{path.stem}.{fmt}", str(path))


def _progress(total: int | None, quiet: bool):
    """A rich progress bar on stderr when it is a terminal, else None."""
    if quiet or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=True)
    progress.start()
    progress.add_task("files", total=total)
    return progress


def run_batch(request: SynthRequest, choice: EngineChoice, params, *, jsonl: bool, input_dir: Path | None,
              output_dir: Path | None, stdin) -> None:
    """One model load for many outputs: JSON Lines jobs on stdin, or a folder of .txt files."""
    from soprano_cli.audio.formats import check_format, format_from_path
    from soprano_cli.synthesis import join_sentences, write_audio_file
    from soprano_cli.text.pipeline import sentences_from_text

    if jsonl and (input_dir or output_dir):
        raise InvalidParameterError("--jsonl reads jobs from stdin; it cannot be combined with --input-dir")
    if not jsonl and (input_dir is None or output_dir is None):
        raise InvalidParameterError("--input-dir and --output-dir go together")
    if jsonl:
        jobs = _jobs_from_jsonl(stdin)
    else:
        fmt = check_format((request.audio_format or "wav").lower())
        jobs = _jobs_from_folder(input_dir, output_dir, fmt)

    engine = open_engine(choice)
    started = time.perf_counter()
    files, audio_seconds = 0, 0.0
    progress = _progress(None, request.quiet)
    group: list[tuple[_Job, list[str]]] = []

    def flush() -> None:
        nonlocal files, audio_seconds
        flat = [sentence for _, sentences in group for sentence in sentences]
        results = iter(engine.synthesize(flat, params))
        for job, sentences in group:
            pieces = [next(results).audio for _ in sentences]
            audio = join_sentences(pieces, request.sentence_silence)
            write_audio_file(job.output, audio, format_from_path(job.output) if jsonl else fmt,
                             sample_rate=request.sample_rate, sample_format=request.sample_format)
            files += 1
            audio_seconds += audio.size / engine.sample_rate
            if progress is not None:
                progress.advance(progress.task_ids[0])
        group.clear()

    try:
        for job in jobs:
            if jsonl:
                format_from_path(job.output)  # an unknown extension fails before any work on it
            sentences = sentences_from_text(job.text, **request.sentence_options())
            if not sentences:
                raise InputTextError(f"{job.label}: no text to synthesize")
            group.append((job, sentences))
            # Enough sentences to fill the LM batch: synthesize them together.
            if sum(len(s) for _, s in group) >= engine.config.max_batch:
                flush()
        if group:
            flush()
    finally:
        if progress is not None:
            progress.stop()
    if not request.quiet:
        _summary(files, audio_seconds, time.perf_counter() - started)
