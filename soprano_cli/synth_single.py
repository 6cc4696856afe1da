"""`soprano synth` for one output, as library functions: a text (or stdin) to one file, pipe or speaker.

Many outputs from one run (--jsonl, --input-dir) are synth_batch.py; both render through rendering.py.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from soprano_cli.engine.results import WHOLE_SENTENCE
from soprano_cli.errors import InputTextError, OutputError

log = logging.getLogger(__name__)


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
    audio_latency: float | None = None  # seconds the device holds; None: the player's default
    chunk_frames: int = 1
    normalize: bool = True
    lines: bool = False
    min_seconds: float = 2.0
    max_seconds: float = 30.0
    quiet: bool = False
    verbose: bool = False
    text_options: object = None  # TextOptions (markdown, lexicon, classes left as written); None: the defaults
    audio: object = None  # AudioOptions (speed, volume, loudness); None: the audio as generated

    def shaper(self, pauses=None):
        """The SentenceAudio for one output: these audio options, `pauses` (a Script) and the sentence silence."""
        from soprano_cli.audio.post import AudioOptions, SentenceAudio
        from soprano_cli.model_facts import SAMPLE_RATE

        return SentenceAudio(self.audio or AudioOptions(), SAMPLE_RATE, pauses, self.sentence_silence)

    def sentence_options(self) -> dict:
        """Options for `sentences_from_lines`.

        --sentence-silence and --captions are per sentence, and silence and cues fall between the
        chunks the engine speaks: so with either, short sentences are not merged into one chunk.
        """
        per_sentence = self.sentence_silence > 0 or self.captions is not None
        return dict(normalize=self.normalize, options=self.text_options, lines_are_chunks=self.lines,
                    min_seconds=0.0 if per_sentence else self.min_seconds, max_seconds=self.max_seconds)


@dataclass
class EngineChoice:
    """Where synthesis runs: a daemon when one answers, else an engine loaded here."""

    config: object  # EngineConfig
    server: str | None = None  # URL, 'unix:/path', 'none' (never a daemon), or None for the default socket
    explicit: tuple[str, ...] = ()  # config fields the user set (model, device, backend, dtype): a daemon must match


def open_engine(choice: EngineChoice):
    """A running daemon's RemoteEngine if its engine is the one asked for, else a freshly loaded Engine."""
    if choice.server != "none":
        try:
            from soprano_cli.server.client import connect_daemon
        except ImportError:  # the server package is optional at runtime
            connect_daemon = None
        if connect_daemon is not None:
            wanted = {name: getattr(choice.config, name) for name in choice.explicit}
            remote = connect_daemon(choice.server, **wanted)
            if remote is not None:
                log.info("using the daemon at %s", remote.url)
                return remote
    from soprano_cli.engine.engine import Engine

    return Engine.load(choice.config)


@dataclass
class Progress:
    """How far a run has got, for a display (the CLI draws it on a terminal)."""

    unit: str  # what is counted: "sentences" or "files"
    done: int = 0
    total: int = 0  # known so far
    total_final: bool = False  # the input has ended: total will not grow
    audio_seconds: float = 0.0  # generated so far
    elapsed: float = 0.0  # wall seconds since synthesis started

    @property
    def speed(self) -> float:
        """Seconds of audio per second of wall time."""
        return self.audio_seconds / self.elapsed if self.elapsed > 0 else 0.0


class _Counted:
    """Passes items through, counting them; `exhausted` once the source has ended."""

    def __init__(self, items):
        self._items = iter(items)
        self.count = 0
        self.exhausted = False

    def __iter__(self):
        return self

    def __next__(self):
        try:
            item = next(self._items)
        except StopIteration:
            self.exhausted = True
            raise
        self.count += 1
        return item


class Background:
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
    from soprano_cli.rendering import check_writable

    for path in (request.output, request.captions):  # found unwritable before, not after, synthesis
        if path is not None:
            check_writable(path)
    # An encoder over a throwaway buffer validates rate, sample format and codec availability.
    import io

    open_encoder(fmt, io.BytesIO(), output_rate=request.sample_rate, sample_format=request.sample_format)


def run_single(request: SynthRequest, choice: EngineChoice, params, start_display=None) -> None:
    """Speak the request's text (or stdin) to its output, streaming as configured.

    `start_display`, if given, is called once synthesis starts and returns an object with
    update(Progress) and close(): it sees sentences finished out of those read so far, and audio.
    """
    from soprano_cli.rendering import Renderer, open_output
    from soprano_cli.text.script import Script
    from soprano_cli.text_input import iter_input_lines

    fmt = output_format(request)
    _check_output_options(request, fmt)
    to_terminal = request.output is None and sys.stdout.isatty()
    play = request.play or (request.streaming and to_terminal)
    if to_terminal and not play:
        raise OutputError("refusing to write audio to a terminal; use -o FILE, a pipe, or --streaming to play it")

    loading = Background(lambda: open_engine(choice))  # loads while the first sentence is read
    if request.text is not None:
        source = [request.text]
    else:
        if sys.stdin.isatty() and not request.quiet:
            print("soprano: reading text from stdin; end it with Ctrl-D", file=sys.stderr, flush=True)
        source = iter_input_lines([])
    script = Script(source, **request.sentence_options())  # sentences, and the pauses markup asks for
    sentences = iter(script)
    first = next(sentences, None)
    if first is None:
        raise InputTextError("no text to synthesize: the input is empty")
    engine = loading.result()

    sink = None if to_terminal else open_output(request.output) if request.output else sys.stdout.buffer
    encoder = player = display = None
    completed = False
    try:
        if sink is not None:
            from soprano_cli.audio.formats import open_encoder

            encoder = open_encoder(fmt, sink, input_rate=engine.sample_rate, output_rate=request.sample_rate,
                                   sample_format=request.sample_format)
        if play:
            from soprano_cli.audio.playback import Player

            tuning = {} if request.audio_latency is None else {"latency": request.audio_latency}
            player = Player(engine.sample_rate, 1, request.audio_device, **tuning)
        live = request.streaming or play
        counted = _Counted(itertools.chain([first], sentences))
        display = start_display() if start_display else None
        if display is not None:
            display.update(Progress("sentences", 0, counted.count, counted.exhausted))

        def report(stats) -> None:
            display.update(Progress("sentences", stats.finished, counted.count, counted.exhausted,
                                    stats.generated / engine.sample_rate, stats.elapsed))

        renderer = Renderer(encoder, player, on_progress=report if display else None, shaper=request.shaper(script))
        # A file gets each sentence as soon as it and the ones before it have ended; sentences that
        # end early wait in the renderer rather than in the engine, so Ctrl-C can still write them.
        chunks = engine.stream(counted, params, request.chunk_frames if live else WHOLE_SENTENCE, in_order=live)
        try:
            stats = renderer.feed(chunks)
            if display is not None:
                report(stats)  # the input's end may come after the last chunk (a pipe left open)
        except KeyboardInterrupt:
            if request.captions is not None:
                _write_captions(request.captions, renderer.stats.cues)  # the cues of what the file holds
            raise
        completed = True
    finally:
        # Also on Ctrl-C: the file written so far is closed into a valid, shorter one.
        if encoder is not None:
            encoder.close()
        if request.output is not None and sink is not None:
            sink.close()
        if player is not None:
            player.close() if completed else player.abort()
        if display is not None:
            display.close()
    if request.captions is not None:
        _write_captions(request.captions, stats.cues)
    if request.verbose:
        print_summary(1, stats.audio_seconds, stats.elapsed, first_audio=stats.first_audio_seconds)


def _write_captions(path: Path, cues: list) -> None:
    from soprano_cli.audio.captions import write_captions

    write_captions(path, cues)


def print_summary(files: int, audio_seconds: float, elapsed: float, first_audio: float | None = None) -> None:
    speed = audio_seconds / elapsed if elapsed > 0 else 0.0
    line = f"{files} file{'s' if files != 1 else ''}, {audio_seconds:.1f} s of audio in {elapsed:.2f} s ({speed:.1f}x real time)"
    if first_audio is not None:
        line += f", first audio after {first_audio * 1000:.0f} ms"
    print(f"soprano: {line}", file=sys.stderr, flush=True)
