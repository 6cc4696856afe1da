"""`soprano synth`: text from arguments, stdin, JSON Lines or a folder -> speech."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from soprano_cli import model_facts as facts
from soprano_cli.cli import options as opt

OUTPUT_PANEL = "Output"
INPUT_PANEL = "Input"
BATCH_PANEL = "Batch jobs"
SERVER_PANEL = "Daemon"
RAY_PANEL = "Ray cluster"


def register(app: typer.Typer) -> None:
    """Add the `synth` subcommand to the app."""
    app.command("synth", help=(
        "Speak TEXT (or stdin) as audio on stdout or in a file. Text is normalized and split into "
        "sentences that are synthesized as they arrive; --streaming writes audio as it is generated. "
        "A running daemon (`soprano serve`) does the work only when its engine is the one asked for: the "
        "same --model, --device, --backend and --dtype, for each of them given as an option or SOPRANO_* "
        "variable; otherwise synth loads the model itself (-v says why). Every option is checked first, "
        "daemon or not; --no-server never contacts a daemon."
    ))(synth_command)


def synth_command(
    ctx: typer.Context,
    text: Annotated[Optional[list[str]], typer.Argument(help="Text to speak; stdin when omitted.", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", rich_help_panel=OUTPUT_PANEL,
        help="Audio file; its extension picks the format (.wav .flac .ogg .opus .mp3 .pcm/.raw).")] = None,
    audio_format: Annotated[Optional[str], typer.Option("--format", "-f", rich_help_panel=OUTPUT_PANEL,
        help="wav, pcm, flac, ogg, opus, mp3 or aac [default: from -o, else wav].")] = None,
    sample_rate: Annotated[Optional[int], typer.Option("--sample-rate", "-r", rich_help_panel=OUTPUT_PANEL,
        help=f"Resample to this rate (e.g. 24000, 22050, 16000) [default: {facts.SAMPLE_RATE}].")] = None,
    sample_format: Annotated[str, typer.Option("--sample-format", rich_help_panel=OUTPUT_PANEL,
        help="s16 or f32 samples for wav and pcm.")] = "s16",
    sentence_silence: Annotated[float, typer.Option("--sentence-silence", min=0.0, max=10.0,
        rich_help_panel=OUTPUT_PANEL, help="Seconds of silence between sentences.")] = 0.0,
    speed: Annotated[float, typer.Option("--speed", rich_help_panel=OUTPUT_PANEL,
        help="Speak this many times as fast, pitch kept (time-stretched, 0.25-4.0).")] = 1.0,
    volume: Annotated[float, typer.Option("--volume", rich_help_panel=OUTPUT_PANEL,
        help="Multiply the samples by this gain (0-10, after --loudness); past full scale is clipped.")] = 1.0,
    loudness: Annotated[Optional[float], typer.Option("--loudness", rich_help_panel=OUTPUT_PANEL,
        metavar="LUFS", show_default=False,
        help="Bring speech to this integrated loudness (-70 to -5, e.g. -16), gain measured on the first sentence.")] = None,
    captions: Annotated[Optional[Path], typer.Option("--captions", rich_help_panel=OUTPUT_PANEL,
        help="Also write subtitles, one cue per sentence (.srt or .vtt).")] = None,
    streaming: Annotated[bool, typer.Option("--streaming", "-s", rich_help_panel=OUTPUT_PANEL,
        help="Write audio as it is generated (to the speakers when stdout is a terminal).")] = False,
    play: Annotated[bool, typer.Option("--play", rich_help_panel=OUTPUT_PANEL,
        help="Also play through the speakers as it is generated.")] = False,
    audio_device: Annotated[Optional[str], typer.Option("--audio-device", rich_help_panel=OUTPUT_PANEL,
        help="Output device for --play (name or index; see `soprano play --list-devices`).")] = None,
    audio_latency: Annotated[Optional[float], typer.Option("--audio-latency", rich_help_panel=OUTPUT_PANEL,
        **opt.PLAYBACK_LATENCY)] = None,
    chunk_frames: Annotated[int, typer.Option("--chunk-frames", min=1, max=facts.MAX_NEW_TOKENS,
        rich_help_panel=OUTPUT_PANEL, help=f"Frames ({facts.FRAME_MS} ms each) per streamed chunk.")] = 1,
    normalize: Annotated[bool, typer.Option("--normalize/--no-normalize", rich_help_panel=INPUT_PANEL,
        help="Expand numbers, symbols and abbreviations to words first.")] = True,
    lines: Annotated[bool, typer.Option("--lines", rich_help_panel=INPUT_PANEL,
        help="Each input line is one finished chunk (as `soprano split` writes them).")] = False,
    min_seconds: Annotated[float, typer.Option("--min-seconds", min=0.0, rich_help_panel=INPUT_PANEL,
        help="Merge sentences shorter than this (estimated speech); 0 with --sentence-silence or --captions.")] = 2.0,
    max_seconds: Annotated[float, typer.Option("--max-seconds", min=0.5, rich_help_panel=INPUT_PANEL,
        help="Break chunks longer than this (estimated speech).")] = 30.0,
    markdown: opt.Markdown = True,
    lexicon: opt.Lexicon = None,
    urls: opt.Urls = True,
    emails: opt.Emails = True,
    phone_numbers: opt.PhoneNumbers = True,
    jsonl: Annotated[bool, typer.Option("--jsonl", rich_help_panel=BATCH_PANEL,
        help='Read jobs, one JSON object per line ({"text": ..., "output": ...}), from the files named as '
             "arguments ('-' or none: stdin).")] = False,
    input_dir: Annotated[Optional[Path], typer.Option("--input-dir", rich_help_panel=BATCH_PANEL,
        help="Speak every .txt file in this folder ...")] = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", rich_help_panel=BATCH_PANEL,
        help="... into one audio file each here (format from --format).")] = None,
    ray: Annotated[Optional[str], typer.Option("--ray", rich_help_panel=RAY_PANEL, metavar="auto|ADDRESS",
        help="Spread the batch jobs over Ray actors: 'auto' joins a running cluster or starts a local one; "
             "or a head's host:port. Needs `pip install 'soprano-cli[ray]'`.")] = None,
    ray_workers: Annotated[Optional[int], typer.Option("--ray-workers", min=1, rich_help_panel=RAY_PANEL,
        show_default=False, help="Actors, each with its own model [default: as many as the cluster's CPUs hold].")] = None,
    ray_cpus_per_worker: Annotated[float, typer.Option("--ray-cpus-per-worker", min=0.01, rich_help_panel=RAY_PANEL,
        help="CPUs reserved for each actor (its torch threads).")] = 1.0,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", rich_help_panel=RAY_PANEL,
        help="With --ray: skip outputs that exist (each is renamed into place only when complete).")] = True,
    model: opt.Model = None,
    device: opt.Device = "auto",
    backend: opt.Backend = "auto",
    dtype: opt.Dtype = "auto",
    cache_size: opt.CacheSize = 100,
    decoder_batch_size: opt.DecoderBatchSize = None,
    max_batch: opt.MaxBatch = None,
    temperature: opt.Temperature = facts.TEMPERATURE,
    top_p: opt.TopP = facts.TOP_P,
    repetition_penalty: opt.RepetitionPenalty = facts.REPETITION_PENALTY,
    seed: opt.Seed = None,
    retries: opt.Retries = facts.RETRIES,
    max_frames: opt.MaxFrames = facts.MAX_NEW_TOKENS,
    server: Annotated[Optional[str], typer.Option("--server", envvar="SOPRANO_SERVER", rich_help_panel=SERVER_PANEL,
        help="Daemon URL (http://host:port or unix:/path); 'none' disables [default: the local daemon if running].")] = None,
    no_server: Annotated[bool, typer.Option("--no-server", rich_help_panel=SERVER_PANEL,
        help="Never contact a daemon: always synthesize in this process.")] = False,
    quiet: opt.Quiet = False,
    verbose: opt.Verbose = False,
) -> None:
    from soprano_cli import synth_single
    from soprano_cli.audio.post import AudioOptions
    from soprano_cli.cli.progress import terminal_progress

    opt.configure_logging(verbose, quiet)
    jsonl_files = [Path(name) for name in text or []] if jsonl else None  # with --jsonl, arguments are job files
    job = synth_single.SynthRequest(
        text=" ".join(text) if text and not jsonl else None, output=output, audio_format=audio_format,
        sample_rate=sample_rate, sample_format=sample_format, sentence_silence=sentence_silence,
        captions=captions, streaming=streaming, play=play, audio_device=audio_device, audio_latency=audio_latency,
        chunk_frames=chunk_frames, normalize=normalize, lines=lines, min_seconds=min_seconds,
        max_seconds=max_seconds, quiet=quiet, verbose=verbose,
        text_options=opt.text_options(markdown, lexicon, urls, emails, phone_numbers),
        # The ranges live in audio/ (one home, also the server's): a bad value is one line, exit 2.
        audio=AudioOptions(speed=speed, volume=volume, loudness=loudness).validated(
            {"speed": "--speed", "volume": "--volume", "loudness": "--loudness"}),
    )
    # Every option is checked before any daemon is asked: a daemon must not hide a misspelt one.
    engine_options = synth_single.EngineChoice(
        config=opt.engine_config(model, device, backend, dtype, max_batch, decoder_batch_size, cache_size),
        server="none" if no_server else server, explicit=opt.explicit(ctx, opt.DAEMON_MUST_MATCH),
    )
    params = opt.sampling_params(temperature, top_p, repetition_penalty, seed, retries, max_frames)
    if ray is not None:
        from soprano_cli import ray_jobs
        from soprano_cli.errors import InvalidParameterError

        if not (jsonl or input_dir or output_dir):
            raise InvalidParameterError("--ray runs batch jobs: add --jsonl or --input-dir and --output-dir")
        options = ray_jobs.RayOptions(address=ray, workers=ray_workers, cpus_per_worker=ray_cpus_per_worker,
                                      resume=resume)
        ray_jobs.run_ray_batch(job, engine_options.config, params, options, jsonl=jsonl_files, input_dir=input_dir,
                               output_dir=output_dir, start_display=terminal_progress(quiet, verbose))
    elif jsonl or input_dir or output_dir:
        from soprano_cli import synth_batch

        synth_batch.run_batch(job, engine_options, params, jsonl=jsonl_files, input_dir=input_dir, output_dir=output_dir,
                              start_display=terminal_progress(quiet, verbose))
    else:
        synth_single.run_single(job, engine_options, params, start_display=terminal_progress(quiet, verbose))
