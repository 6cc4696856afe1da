"""`soprano play`: play audio or raw PCM from a file or stdin on a sound device, as it arrives."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from soprano_cli.cli import options as opt
from soprano_cli.errors import InputTextError
from soprano_cli.model_facts import SAMPLE_RATE

# Set to any value to log when the first sample reaches PortAudio (benchmarks/bench_play_latency.py).
TRACE_ENV = "SOPRANO_TRACE_PLAYBACK"


class SampleFormat(str, Enum):
    s16 = "s16"
    f32 = "f32"


def _open_input(file: Optional[str]):
    if file in (None, "-"):
        if sys.stdin is None or sys.stdin.isatty():
            raise InputTextError("no audio to play: give a FILE or pipe audio into stdin")
        return sys.stdin.buffer, "stdin"
    try:
        return open(file, "rb", buffering=0), file
    except OSError as error:
        raise InputTextError(f"cannot read {file}: {error.strerror or error}") from error


def _print_devices() -> None:
    from soprano_cli.audio.playback import list_devices
    from soprano_cli.errors import AudioDeviceError

    devices = list_devices()
    if not devices:
        raise AudioDeviceError("no audio output device found (is a sound server running?)")
    for device in devices:
        mark = "*" if device.is_default else " "
        typer.echo(
            f"{mark} {device.index:>3}  {device.name}  ({device.host_api}, {device.channels} ch, "
            f"{device.default_rate:g} Hz)"
        )


def _trace(label: str, when: float | None) -> None:
    if when is not None:
        print(f"soprano: trace: {label} {when:.6f}", file=sys.stderr, flush=True)


def _traced(blocks, stamps: dict):
    """Pass blocks through, noting when the first non-empty one was read."""
    import time

    for block in blocks:
        if len(block) and "first_block" not in stamps:
            stamps["first_block"] = time.monotonic()
        yield block


def register(app: typer.Typer) -> None:
    """Add the `play` subcommand to the app."""

    @app.command("play", help=(
        "Play audio from FILE or stdin: WAV (from its first bytes, as it arrives), FLAC, Ogg Vorbis, Opus and "
        "MP3 through libsndfile, anything else ffmpeg decodes (AAC, M4A, ...) when ffmpeg is installed; "
        "or headerless PCM with --raw."))
    def play_command(
        file: Annotated[Optional[str], typer.Argument(help="Audio or PCM file; stdin when absent or '-'.")] = None,
        raw: Annotated[bool, typer.Option("--raw", help="Input is headerless PCM (see --rate, --sample-format).")] = False,
        rate: Annotated[int, typer.Option(
            "--rate", min=1000, max=384000, help="Sample rate of --raw input.")] = SAMPLE_RATE,
        sample_format: Annotated[SampleFormat, typer.Option(
            "--sample-format", help="Sample encoding of --raw input (little-endian).")] = SampleFormat.s16,
        channels: Annotated[int, typer.Option("--channels", min=1, max=32, help="Channels of --raw input.")] = 1,
        device: Annotated[Optional[str], typer.Option(
            "--device", help="Output device: index or part of its name (see --list-devices).")] = None,
        list_devices: Annotated[bool, typer.Option("--list-devices", help="List output devices and exit.")] = False,
        latency: Annotated[Optional[float], typer.Option("--latency", **opt.PLAYBACK_LATENCY)] = None,
        quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing but errors.")] = False,
    ) -> None:
        if list_devices:
            _print_devices()
            return
        from soprano_cli.audio.playback import Player
        from soprano_cli.audio.reader import read_audio_stream

        opt.configure_logging(quiet=quiet)  # the player's warnings (dropouts) as "soprano: ..." lines
        tuning = {} if latency is None else {"latency": latency}

        stream, name = _open_input(file)
        trace = bool(os.environ.get(TRACE_ENV))
        stamps: dict = {}
        # Opened before the input arrives, at what soprano produces (its rate, mono) unless --raw
        # says otherwise, so the device's start-up overlaps waiting for the producer.
        player = Player(rate if raw else SAMPLE_RATE, channels if raw else 1, device, **tuning)
        try:
            rate_in, channels_in, blocks = read_audio_stream(
                stream, raw=raw, rate=rate, sample_format=sample_format.value, channels=channels
            )
            if (rate_in, channels_in) != (player.sample_rate, player.channels):
                player.abort()
                player = Player(rate_in, channels_in, device, **tuning)
            for block in _traced(blocks, stamps) if trace else blocks:
                player.write(block)
            player.close()
        except BaseException:
            player.abort()
            raise
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
        if trace:
            _trace("first-block-read", stamps.get("first_block"))
            _trace("first-sample-to-device", player.first_sample_time)
        if not quiet:
            seconds = player.frames_played / player.device_rate
            note = f", {player.underruns} underruns (input slower than real time)" if player.underruns else ""
            typer.echo(f"played {seconds:.2f} s from {Path(name).name if name != 'stdin' else name}{note}", err=True)
