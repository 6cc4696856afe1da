"""Typed errors: each carries the one-line message a user sees and the exit code the CLI returns."""

from __future__ import annotations

# Exit codes, documented in README.md and the man pages; every subcommand uses these.
EXIT_OK = 0
EXIT_FAILURE = 1  # an unexpected internal failure
EXIT_USAGE = 2  # bad options or arguments (click's own code)
EXIT_INPUT = 3  # unreadable or empty input text, invalid UTF-8
EXIT_MODEL_NOT_FOUND = 4  # no such local folder, or offline with nothing cached
EXIT_MODEL_INVALID = 5  # a checkpoint file is missing or corrupt
EXIT_OUTPUT = 6  # unknown format, unwritable path, a failed write (full disk), audio to a terminal
EXIT_AUDIO_DEVICE = 7  # no sound device or no PortAudio library
EXIT_SERVER = 8  # a daemon could not be reached or answered with an error
EXIT_BACKEND = 9  # requested backend or device is unavailable here
EXIT_SOME_JOBS_FAILED = 10  # batch synth: some jobs failed (each named on stderr); the others were written
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM)


class SopranoError(Exception):
    """Base of every error the library raises on purpose."""

    exit_code = EXIT_FAILURE
    http_status = 500
    error_type = "server_error"

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidParameterError(SopranoError):
    """A parameter outside its allowed range or set of values."""

    exit_code = EXIT_USAGE
    http_status = 400
    error_type = "invalid_request_error"


class InputTextError(SopranoError):
    """Input text that cannot be synthesized: empty, undecodable, too long."""

    exit_code = EXIT_INPUT
    http_status = 400
    error_type = "invalid_request_error"


class ModelNotFoundError(SopranoError):
    """No model at the given path, or a hub model that is neither cached nor downloadable."""

    exit_code = EXIT_MODEL_NOT_FOUND
    http_status = 404
    error_type = "invalid_request_error"


class ModelLoadError(SopranoError):
    """A checkpoint file that is missing, truncated or of the wrong shape."""

    exit_code = EXIT_MODEL_INVALID


class OutputError(SopranoError):
    """Audio that cannot be written: unknown format, unwritable path, a terminal."""

    exit_code = EXIT_OUTPUT
    http_status = 400
    error_type = "invalid_request_error"


class AudioDeviceError(SopranoError):
    """No sound device, or no PortAudio library to reach one."""

    exit_code = EXIT_AUDIO_DEVICE


class ServerError(SopranoError):
    """A daemon that could not be reached or that answered with an error."""

    exit_code = EXIT_SERVER
    http_status = 502


class BackendUnavailableError(SopranoError):
    """A backend or device that this machine cannot provide."""

    exit_code = EXIT_BACKEND
    http_status = 400
    error_type = "invalid_request_error"


class GenerationBackendError(SopranoError):
    """An external LM engine (lmdeploy) failed while generating: it reported an error or stopped answering."""


class BatchJobsFailedError(SopranoError):
    """Batch jobs that failed alone while the others were written; the message names each."""

    exit_code = EXIT_SOME_JOBS_FAILED
