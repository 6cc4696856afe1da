"""Server counters and gauges, rendered in the Prometheus text format for `GET /metrics`."""

from __future__ import annotations

import threading
from collections import defaultdict


class Metrics:
    """Thread-safe counters the routes and the scheduler update; `render()` is the /metrics body."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)  # (route, status) -> count
        self.errors: dict[str, int] = defaultdict(int)  # error type -> count
        self.cancelled = 0  # requests whose client went away before the end
        self.audio_seconds = 0.0  # audio delivered, summed over requests
        self.busy_seconds = 0.0  # wall time of speech requests, from arrival to last byte
        self.last_rtf = 0.0  # busy / audio of the last finished speech request
        self.ttfb_sum = 0.0  # time to first audio byte, summed
        self.ttfb_count = 0
        self.in_flight = 0  # speech requests being served
        # Set by the scheduler.
        self.queue_depth = 0  # requests waiting for their first sentence to enter the batch
        self.active_sequences = 0  # sentences in the LM batch
        self.steps = 0  # LM decode steps run
        self.frames = 0  # frames generated
        self.buffered_seconds = 0.0  # audio generated for requests in the batch that their clients have not taken

    def count_request(self, route: str, status: int) -> None:
        with self._lock:
            self.requests[(route, status)] += 1

    def count_error(self, error_type: str) -> None:
        with self._lock:
            self.errors[error_type] += 1

    def speech_started(self) -> None:
        with self._lock:
            self.in_flight += 1

    def speech_finished(self, *, audio_seconds: float, wall_seconds: float, ttfb: float | None,
                        cancelled: bool) -> None:
        with self._lock:
            self.in_flight -= 1
            self.audio_seconds += audio_seconds
            self.busy_seconds += wall_seconds
            if ttfb is not None:
                self.ttfb_sum += ttfb
                self.ttfb_count += 1
            if cancelled:
                self.cancelled += 1
            elif audio_seconds > 0:
                self.last_rtf = wall_seconds / audio_seconds

    def scheduler_state(self, *, queue_depth: int, active: int, steps: int = 0, frames: int = 0,
                        buffered_seconds: float = 0.0) -> None:
        with self._lock:
            self.buffered_seconds = buffered_seconds
            self.queue_depth = queue_depth
            self.active_sequences = active
            self.steps += steps
            self.frames += frames

    def render(self, model: str) -> str:
        """The Prometheus text exposition (version 0.0.4)."""
        with self._lock:
            lines: list[str] = []

            def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
                lines.append(f"# HELP {name} {help_text}")
                lines.append(f"# TYPE {name} {kind}")
                for labels, value in samples:
                    lines.append(f"{name}{labels} {_number(value)}")

            metric("soprano_requests_total", "counter", "HTTP requests by route and status.",
                   [(f'{{route="{route}",status="{status}"}}', n) for (route, status), n in sorted(self.requests.items())]
                   or [('{route="/v1/audio/speech",status="200"}', 0)])
            metric("soprano_errors_total", "counter", "Error responses by OpenAI error type.",
                   [(f'{{type="{kind}"}}', n) for kind, n in sorted(self.errors.items())]
                   or [('{type="invalid_request_error"}', 0)])
            metric("soprano_requests_cancelled_total", "counter", "Requests whose client disconnected early.",
                   [("", self.cancelled)])
            metric("soprano_audio_seconds_total", "counter", "Seconds of audio generated.", [("", self.audio_seconds)])
            metric("soprano_request_seconds_total", "counter", "Wall time of speech requests, summed.",
                   [("", self.busy_seconds)])
            metric("soprano_real_time_factor", "gauge",
                   "Wall time over audio duration of the last finished request (below 1 is faster than real time).",
                   [("", self.last_rtf)])
            metric("soprano_time_to_first_byte_seconds", "summary", "Time from request to first audio byte.",
                   [("_sum", self.ttfb_sum), ("_count", self.ttfb_count)])  # suffixes in the label slot
            metric("soprano_requests_in_flight", "gauge", "Speech requests being served.", [("", self.in_flight)])
            metric("soprano_queue_depth", "gauge", "Requests waiting for a place in the batch.",
                   [("", self.queue_depth)])
            metric("soprano_active_sequences", "gauge", "Sentences in the running LM batch.",
                   [("", self.active_sequences)])
            metric("soprano_buffered_audio_seconds", "gauge",
                   "Audio generated for requests still in the batch that their clients have not read yet.",
                   [("", round(self.buffered_seconds, 3))])
            metric("soprano_decode_steps_total", "counter", "LM decode steps.", [("", self.steps)])
            metric("soprano_frames_total", "counter", "Audio frames generated.", [("", self.frames)])
            metric("soprano_model_info", "gauge", "The loaded model.", [(f'{{model="{_escape(model)}"}}', 1)])
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
