"""Options shared by the commands that load a model (synth, serve), defined once.

Each is an `Annotated` type for typer; environment variables are the documented SOPRANO_* set.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from soprano_cli.engine.config import CPU_DECODER_BATCH, CPU_MAX_BATCH, CUDA_DECODER_BATCH, CUDA_MAX_BATCH
from soprano_cli.model_facts import MAX_NEW_TOKENS

MODEL_PANEL = "Model"
SAMPLING_PANEL = "Sampling"

# `play --latency` and `synth --audio-latency`: one setting of the player, defined once.
PLAYBACK_LATENCY = dict(
    min=0.001, max=2.0, metavar="SECONDS", show_default=False,
    help="Audio the sound device holds ahead of the speaker while playing (default a tenth of a second): "
         "less starts sooner, more survives a busy machine without dropouts.")

Model = Annotated[Optional[str], typer.Option(
    "--model", "-m", "--model-path", envvar="SOPRANO_MODEL", rich_help_panel=MODEL_PANEL,
    help="Model folder or hub id [default: ekwek/Soprano-1.1-80M].")]
Device = Annotated[str, typer.Option(
    "--device", "-d", envvar="SOPRANO_DEVICE", rich_help_panel=MODEL_PANEL,
    help="auto, cpu, cuda or mps.")]
Backend = Annotated[str, typer.Option(
    "--backend", "-b", envvar="SOPRANO_BACKEND", rich_help_panel=MODEL_PANEL,
    help="auto (= torch), torch, transformers or lmdeploy (CUDA; TurboMind in bfloat16, frames streamed per "
         "step; pip install 'soprano-cli[lmdeploy]').")]
Dtype = Annotated[str, typer.Option(
    "--dtype", envvar="SOPRANO_DTYPE", rich_help_panel=MODEL_PANEL,
    help="Weights: auto (fastest that holds quality), float32 (exact), bfloat16, or int8 (LM and decoder).")]
CacheSize = Annotated[int, typer.Option(
    "--cache-size", "-c", rich_help_panel=MODEL_PANEL,
    help="KV cache budget in MB for --backend lmdeploy (as upstream: its share of GPU memory); torch sizes its own.")]
DecoderBatchSize = Annotated[Optional[int], typer.Option(
    "--decoder-batch-size", "-bs", min=1, rich_help_panel=MODEL_PANEL, show_default=False,
    help=f"Sentences decoded to audio at once [default: {CPU_DECODER_BATCH} on CPU, {CUDA_DECODER_BATCH} on CUDA].")]
MaxBatch = Annotated[Optional[int], typer.Option(
    "--max-batch", min=1, max=256, envvar="SOPRANO_MAX_BATCH", rich_help_panel=MODEL_PANEL, show_default=False,
    help=f"Sentences generated at once by the LM [default: {CPU_MAX_BATCH} on CPU, {CUDA_MAX_BATCH} on CUDA].")]

Temperature = Annotated[float, typer.Option(
    "--temperature", min=0.0, max=5.0, rich_help_panel=SAMPLING_PANEL, help="0 is greedy (deterministic).")]
TopP = Annotated[float, typer.Option(
    "--top-p", min=0.0, max=1.0, rich_help_panel=SAMPLING_PANEL, help="Nucleus sampling mass.")]
RepetitionPenalty = Annotated[float, typer.Option(
    "--repetition-penalty", min=0.1, max=10.0, rich_help_panel=SAMPLING_PANEL,
    help="Penalty on token ids already used.")]
Seed = Annotated[Optional[int], typer.Option(
    "--seed", min=0, rich_help_panel=SAMPLING_PANEL, help="Makes sampling reproducible.")]
Retries = Annotated[int, typer.Option(
    "--retries", min=0, max=10, rich_help_panel=SAMPLING_PANEL,
    help="Regenerate a sentence that loops or hits the frame cap, up to N times.")]
MaxFrames = Annotated[int, typer.Option(
    "--max-frames", min=1, max=MAX_NEW_TOKENS, rich_help_panel=SAMPLING_PANEL,
    help="Cap on generated tokens (frames + end) per sentence.")]

# How text is read (normalize, synth, serve): one definition, one way to build the options.
TEXT_PANEL = "Text"
Markdown = Annotated[bool, typer.Option(
    "--markdown/--no-markdown", rich_help_panel=TEXT_PANEL,
    help="Read markdown as plain text (headings, emphasis, links, code, lists, tables); drop emoji.")]
Lexicon = Annotated[Optional[Path], typer.Option(
    "--lexicon", envvar="SOPRANO_LEXICON", rich_help_panel=TEXT_PANEL, show_default=False,
    help="Your words and how to say them: 'word<TAB>spoken' and '/regex/<TAB>spoken' lines, # comments.")]
Urls = Annotated[bool, typer.Option(
    "--urls/--no-urls", rich_help_panel=TEXT_PANEL, help="Read web addresses aloud (--no-urls: leave them as written).")]
Emails = Annotated[bool, typer.Option(
    "--emails/--no-emails", rich_help_panel=TEXT_PANEL, help="Read e-mail addresses aloud (or leave them as written).")]
PhoneNumbers = Annotated[bool, typer.Option(
    "--phone-numbers/--no-phone-numbers", rich_help_panel=TEXT_PANEL,
    help="Read phone numbers digit by digit (or leave them as written).")]


def text_options(markdown: bool, lexicon: Path | None, urls: bool = True, emails: bool = True,
                 phone_numbers: bool = True):
    """TextOptions from the shared options; the lexicon file is read (and checked) here."""
    from soprano_cli.text import lexicon as lexicon_file
    from soprano_cli.text.options import TextOptions

    words = lexicon_file.load(lexicon) if lexicon else lexicon_file.Lexicon()
    return TextOptions(markdown=markdown, lexicon=words, urls=urls, emails=emails, phone_numbers=phone_numbers)


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="More detail on stderr.")]


def configure_logging(verbose: bool = False, quiet: bool = False, *, default: int = logging.WARNING,
                      names: tuple[str, ...] = ("soprano_cli",)) -> int:
    """One-line "soprano: ..." messages on stderr for our loggers (and the server's, given in `names`).

    -q shows one level less than `default`, else -v one more (a daemon's default is INFO, a
    command's WARNING). Returns the level set.
    """
    level = default + 10 if quiet else default - 10 if verbose else default
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("soprano: %(message)s"))
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    return level


# Engine options a running daemon must match (when given) before `synth` sends it work.
DAEMON_MUST_MATCH = ("model", "device", "backend", "dtype")


def source(ctx: typer.Context, name: str) -> str | None:
    """Where a parameter's value came from: "COMMANDLINE", "ENVIRONMENT", "DEFAULT"..."""
    # By name: newer typer vendors click, so its ParameterSource need not be click's.
    return getattr(ctx.get_parameter_source(name), "name", None)


def explicit(ctx: typer.Context, names: tuple[str, ...]) -> tuple[str, ...]:
    """The parameters among `names` set on the command line or by their environment variable."""
    return tuple(name for name in names if source(ctx, name) in ("COMMANDLINE", "ENVIRONMENT"))


def engine_config(model, device, backend, dtype, max_batch=None, decoder_batch_size=None, cache_size=100):
    """An EngineConfig from the shared options, its device, backend and dtype names checked (no torch)."""
    from soprano_cli.engine.config import EngineConfig

    return EngineConfig(model=model, device=device, backend=backend, dtype=dtype, max_batch=max_batch,
                        decoder_batch_size=decoder_batch_size, cache_size_mb=cache_size).validated()


def sampling_params(temperature, top_p, repetition_penalty, seed, retries, max_frames):
    """SamplingParams from the shared options, validated."""
    from soprano_cli.engine.sampling import SamplingParams

    return SamplingParams(temperature=temperature, top_p=top_p, repetition_penalty=repetition_penalty,
                          seed=seed, retries=retries, max_new_tokens=max_frames).validated()
