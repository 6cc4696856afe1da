"""The environment variables and exit codes of `soprano`, documented in one place.

The man pages (tools/gen_docs.py) and the tests read these tables; a test greps
the source for SOPRANO_* names so that a new variable cannot go undocumented.
"""

from __future__ import annotations

from dataclasses import dataclass

from soprano_cli import errors
from soprano_cli.engine.checkpoint import DEFAULT_MODEL  # checkpoint.py imports no torch at the top
from soprano_cli.server import limits

# `commands` names the subcommands (their first word) that read a variable; "asgi" is the server
# app run directly (`uvicorn soprano_cli.server:app`), "install-completion" the root option of that
# name, "all" is every command.


@dataclass(frozen=True)
class EnvVar:
    """One environment variable: what it means, its default, who reads it, the option it stands for."""

    name: str
    meaning: str
    default: str
    commands: tuple[str, ...]
    option: str | None = None  # the command-line option it supplies, where there is one


ENVIRONMENT: tuple[EnvVar, ...] = (
    EnvVar("SOPRANO_MODEL", "Model folder or hub id, for every command that loads a model.",
           DEFAULT_MODEL, ("synth", "serve", "models", "doctor", "asgi"), "--model"),
    EnvVar("SOPRANO_DEVICE", "Compute device: auto, cpu, cuda or mps.",
           "auto", ("synth", "serve", "asgi"), "--device"),
    EnvVar("SOPRANO_BACKEND", "LM backend: auto (= torch), torch, transformers or lmdeploy.",
           "auto", ("synth", "serve", "asgi"), "--backend"),
    EnvVar("SOPRANO_DTYPE", "Weight precision: auto, float32, bfloat16 or int8 (int8 covers the decoder too).",
           "auto", ("synth", "serve", "asgi"), "--dtype"),
    EnvVar("SOPRANO_MAX_BATCH", "Sentences the LM generates at once.",
           "16", ("synth", "serve", "asgi"), "--max-batch"),
    EnvVar("SOPRANO_TORCHSCRIPT", "0: run the CPU decode step's loop in eager PyTorch instead of TorchScript "
           "(the same results, about half the speed; an escape hatch, TorchScript being deprecated).",
           "1 (TorchScript where it works)", ("synth", "serve", "doctor", "asgi")),
    EnvVar("SOPRANO_INT8_KERNEL", "0: run the int8 layers (LM and decoder) on fbgemm instead of soprano's own "
           "AVX512-VNNI or AVX2 kernel (built on first use with the C++ compiler; a faster decode step, and with "
           "AVX2 8-bit inputs where fbgemm takes 7).",
           "1 (soprano's kernel where the CPU and a compiler allow)", ("synth", "serve", "doctor", "asgi")),
    EnvVar("SOPRANO_KERNEL_CACHE", "Folder where soprano's int8 kernel is built and kept (one file per PyTorch "
           "version and compiler).", "$XDG_CACHE_HOME/soprano/kernels", ("synth", "serve", "doctor", "asgi")),
    EnvVar("CXX", "The C++ compiler that builds soprano's int8 kernel.", "c++, else g++",
           ("synth", "serve", "doctor", "asgi")),
    EnvVar("SOPRANO_SERVER", "Daemon that synth sends its work to: http://host:port, unix:/path, "
           "or none to always synthesize in-process.",
           "the local daemon's socket when one answers", ("synth", "doctor"), "--server"),
    EnvVar("SOPRANO_LEXICON", "Lexicon file: 'word<TAB>spoken' and '/regex/<TAB>spoken' lines that say "
           "names and terms your way (normalize, synth, and the server's every request).",
           "none", ("normalize", "synth", "serve", "asgi"), "--lexicon"),
    EnvVar("SOPRANO_API_KEY", "Bearer key the daemon requires (serve) and that clients send (synth).",
           "none (no key)", ("serve", "synth", "asgi"), "--api-key"),
    EnvVar("SOPRANO_MAX_INPUT_CHARS", "Longest accepted request text, in characters.",
           str(limits.MAX_INPUT_CHARS), ("asgi",)),
    EnvVar("SOPRANO_MAX_QUEUE", "Requests that may wait for the batch before the server answers 429.",
           str(limits.MAX_QUEUE), ("asgi",)),
    EnvVar("SOPRANO_CORS_ORIGINS", "Comma-separated origins allowed to make browser requests.",
           "none", ("asgi",)),
    EnvVar("SOPRANO_ALLOWED_HOSTS", "Comma-separated Host names the server answers to besides loopback names "
           "and IP addresses ('.example.com' allows its subdomains).", "none", ("asgi",)),
    EnvVar("SOPRANO_TRACE_PLAYBACK", "Any value: log when the first sample reaches the sound device "
           "(for latency benchmarks).", "unset", ("play",)),
    EnvVar("HF_HOME", "Root of the Hugging Face cache; models live in $HF_HOME/hub.",
           "$XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface", ("synth", "serve", "models", "doctor", "asgi")),
    EnvVar("HF_HUB_CACHE", "The hub model cache itself (overrides $HF_HOME/hub).",
           "$HF_HOME/hub", ("synth", "serve", "models", "doctor", "asgi")),
    EnvVar("HF_HUB_OFFLINE", "1: never reach the network; only cached models load.",
           "unset (downloads allowed)", ("synth", "serve", "models", "doctor", "asgi")),
    EnvVar("HF_ENDPOINT", "Address of the Hugging Face hub (or a mirror) that models download from.",
           "https://huggingface.co", ("synth", "serve", "models", "doctor", "asgi")),
    EnvVar("XDG_CACHE_HOME", "Base of the default Hugging Face cache, of soprano/auto-precision.json "
           "(what the --dtype auto probe chose per checkpoint and CPU), of soprano/smoothing/ (int8 "
           "smoothing factors per checkpoint) and of soprano/kernels/ (soprano's built int8 kernel).",
           "~/.cache", ("synth", "serve", "models", "doctor", "asgi")),
    EnvVar("SHELL", "Which shell's completion script --install-completion and --show-completion use "
           "(bash, zsh or fish).", "the login shell", ("install-completion",)),
    EnvVar("XDG_DATA_HOME", "Base of bash's user completion folder, bash-completion/completions.",
           "~/.local/share", ("install-completion",)),
    EnvVar("BASH_COMPLETION_USER_DIR", "bash-completion's user folder (overrides $XDG_DATA_HOME/bash-completion).",
           "unset", ("install-completion",)),
    EnvVar("XDG_CONFIG_HOME", "Base of fish's user completion folder, fish/completions.",
           "~/.config", ("install-completion",)),
    EnvVar("XDG_RUNTIME_DIR", "Where the daemon's socket lives: $XDG_RUNTIME_DIR/soprano/soprano.sock.",
           "/tmp/soprano-UID when unset", ("synth", "serve", "doctor")),
)


@dataclass(frozen=True)
class ExitCode:
    """One exit status and when a command returns it."""

    code: int
    name: str
    meaning: str


EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(errors.EXIT_OK, "EXIT_OK", "Success."),
    ExitCode(errors.EXIT_FAILURE, "EXIT_FAILURE",
             "An unexpected internal failure (or, for doctor, a failed check)."),
    ExitCode(errors.EXIT_USAGE, "EXIT_USAGE", "Bad options or arguments."),
    ExitCode(errors.EXIT_INPUT, "EXIT_INPUT", "Unreadable or empty input text, or invalid UTF-8."),
    ExitCode(errors.EXIT_MODEL_NOT_FOUND, "EXIT_MODEL_NOT_FOUND",
             "No such model folder, or offline with the model not cached."),
    ExitCode(errors.EXIT_MODEL_INVALID, "EXIT_MODEL_INVALID", "A checkpoint file is missing or corrupt."),
    ExitCode(errors.EXIT_OUTPUT, "EXIT_OUTPUT",
             "Audio cannot be written: unknown format, unwritable path, a write that failed (a full disk), "
             "or audio to a terminal."),
    ExitCode(errors.EXIT_AUDIO_DEVICE, "EXIT_AUDIO_DEVICE", "No sound device or no PortAudio library."),
    ExitCode(errors.EXIT_SERVER, "EXIT_SERVER", "A daemon could not be reached or answered with an error."),
    ExitCode(errors.EXIT_BACKEND, "EXIT_BACKEND", "The requested backend, device or dtype is unavailable here."),
    ExitCode(errors.EXIT_SOME_JOBS_FAILED, "EXIT_SOME_JOBS_FAILED",
             "synth --jsonl or --input-dir: some jobs failed (stderr names each and why); the others were written."),
    ExitCode(errors.EXIT_INTERRUPTED, "EXIT_INTERRUPTED",
             "Interrupted (Ctrl-C); a file being written is closed into a valid, shorter one."),
    ExitCode(errors.EXIT_TERMINATED, "EXIT_TERMINATED", "Terminated (SIGTERM); files are closed as for Ctrl-C."),
)


def variables_for(command: str | None = None) -> tuple[EnvVar, ...]:
    """The variables a subcommand reads (all of them for None)."""
    if command is None:
        return ENVIRONMENT
    return tuple(var for var in ENVIRONMENT if command in var.commands or "all" in var.commands)


def render_environment(command: str | None = None) -> str:
    """Plain-text list of the variables a subcommand reads: name, meaning and default."""
    lines = []
    for var in variables_for(command):
        lines.append(f"{var.name}\n    {var.meaning} Default: {var.default}.")
    return "\n".join(lines) + "\n"


def render_exit_codes() -> str:
    """Plain-text table of exit statuses."""
    return "".join(f"{item.code:>4}  {item.meaning}\n" for item in EXIT_CODES)
