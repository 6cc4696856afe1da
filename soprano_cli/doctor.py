"""Checks of this machine for `soprano doctor`: Python, torch, devices, backends, CPU, audio, ffmpeg, model, daemon.

Each check returns a `Check`; none downloads anything or loads a model, and the slowest part is
importing torch. Optional packages are found with importlib's spec lookup, not imported.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

OK, WARN, FAIL, INFO = "ok", "warn", "fail", "info"
MIN_PYTHON = (3, 10)


@dataclass(frozen=True)
class Check:
    """One result: `status` is ok, warn (works, but slower or limited), fail (will not work) or info."""

    name: str
    status: str
    detail: str
    hint: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_python() -> list[Check]:
    version = platform.python_version()
    if sys.version_info[:2] < MIN_PYTHON:
        return [Check("python", FAIL, f"Python {version}", "soprano-cli needs Python 3.10 or newer")]
    return [Check("python", OK, f"Python {version} ({sys.executable})")]


def _torch():
    try:
        import torch
    except Exception as error:  # a broken torch install raises ImportError, OSError or RuntimeError
        return None, f"{type(error).__name__}: {error}"
    return torch, ""


def check_torch() -> list[Check]:
    torch, problem = _torch()
    if torch is None:
        return [Check("torch", FAIL, f"cannot import torch ({problem})", "pip install torch")]
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "ROCm" if getattr(torch.version, "hip", None) else "CPU"
    return [Check("torch", OK, f"torch {torch.__version__} ({build} build)")]


def check_devices() -> list[Check]:
    torch, _ = _torch()
    if torch is None:
        return [Check("device.cpu", FAIL, "no torch", "pip install torch")]
    results = [Check("device.cpu", OK, f"{platform.machine()}, {os.cpu_count()} logical CPUs")]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        results.append(Check("device.cuda", OK, names))
    elif torch.version.cuda is None:
        results.append(Check("device.cuda", INFO, "not available (CPU-only torch build)",
                             "for an NVIDIA GPU install a CUDA build of torch (see pytorch.org)"))
    else:
        results.append(Check("device.cuda", INFO, f"no CUDA GPU found (torch built for CUDA {torch.version.cuda})"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        results.append(Check("device.mps", OK, "Apple Metal (MPS) available"))
    else:
        results.append(Check("device.mps", INFO, "not available (Apple silicon only)"))
    return results


def check_backends() -> list[Check]:
    torch, _ = _torch()
    cuda = torch is not None and torch.cuda.is_available()
    results = [Check("backend.torch", OK if torch is not None else FAIL, "built in (the default backend)")]
    if _installed("transformers"):
        results.append(Check("backend.transformers", OK, f"transformers {_version('transformers')}"))
    else:
        results.append(Check("backend.transformers", INFO, "not installed",
                             "pip install 'soprano-cli[transformers]' to use --backend transformers"))
    results.append(check_lmdeploy(cuda))
    return results


def _turbomind_library() -> bool:
    """Whether lmdeploy's TurboMind extension is in its package folder (found without importing lmdeploy)."""
    spec = importlib.util.find_spec("lmdeploy")
    folders = list(spec.submodule_search_locations or []) if spec else []
    return any(next(Path(folder, "lib").glob("_turbomind*"), None) for folder in folders)


def check_lmdeploy(cuda: bool) -> Check:
    """`--backend lmdeploy`: the package (and its TurboMind engine) installed, and a CUDA GPU to run it."""
    from soprano_cli.engine.config import LMDEPLOY_INSTALL

    if not _installed("lmdeploy"):
        return Check("backend.lmdeploy", INFO, "not installed (CUDA only)",
                     f"{LMDEPLOY_INSTALL} to use --backend lmdeploy" if cuda else "needs an NVIDIA GPU with CUDA")
    installed = f"lmdeploy {_version('lmdeploy')}"
    if not _turbomind_library():
        return Check("backend.lmdeploy", WARN, f"{installed} without its TurboMind engine (no hidden states without it)",
                     f"reinstall a CUDA build: {LMDEPLOY_INSTALL}")
    if not cuda:
        return Check("backend.lmdeploy", INFO, f"{installed} installed, but no CUDA GPU here", "use --backend torch")
    return Check("backend.lmdeploy", OK, f"{installed} (TurboMind engine, CUDA)")


def check_cpu() -> list[Check]:
    from soprano_cli.engine.cpu import cpu_flags, cpu_has_fast_bfloat16

    torch, _ = _torch()
    flags = cpu_flags()
    wanted = {"AVX2": "avx2", "AVX512": "avx512f", "VNNI": "avx512_vnni", "AVX512-BF16": "avx512_bf16",
              "AMX": "amx_bf16"}
    results = []
    if flags:
        have = [label for label, flag in wanted.items() if flag in flags]
        detail = "features: " + (", ".join(have) if have else "none of AVX2/AVX512/AMX")
    else:
        have = []
        detail = f"{platform.machine()} (no /proc/cpuinfo to read features from)"
    if torch is not None:
        capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
        detail += f"; torch kernels: {capability}"
        from soprano_cli.engine import int8_kernel
        from soprano_cli.engine.quantize import int8_supported, use_fbgemm

        cpu = torch.device("cpu")
        kernel = int8_kernel.status() if use_fbgemm(cpu) else ("bfloat16 int8-weight" if int8_supported(cpu) else "none")
        detail += f"; int8 kernel: {kernel}; fast bfloat16: {'yes' if cpu_has_fast_bfloat16() else 'no'}"
        from soprano_cli.engine.step import decode_loop_kind

        detail += f"; decode loop: {decode_loop_kind()}"
        if flags and "AVX2" not in have:
            results.append(Check("cpu.features", WARN, detail, "no AVX2: CPU synthesis will be slow"))
        elif flags and not int8_supported(cpu):
            results.append(Check("cpu.features", OK, detail,
                                 "--dtype auto keeps float32 here; int8 needs an x86 CPU with AVX2, or AVX512-BF16/AMX"))
        else:
            results.append(Check("cpu.features", OK, detail))
    else:
        results.append(Check("cpu.features", INFO, detail))
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = torch.get_num_threads() if torch is not None else None
    detail = f"{usable} usable CPUs" + (f", torch uses {threads} threads" if threads is not None else "")
    hint = "set OMP_NUM_THREADS to the number of physical cores" if threads is not None and threads < min(usable or 1, 4) else ""
    results.append(Check("cpu.threads", WARN if hint else OK, detail, hint))
    return results


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C libraries (ALSA, JACK) that print to fd 2 while PortAudio probes devices."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_audio() -> list[Check]:
    from soprano_cli.errors import AudioDeviceError

    try:
        with _quiet_stderr():
            from soprano_cli.audio.playback import list_devices

            devices = list_devices()
    except AudioDeviceError as error:
        return [Check("audio", WARN, error.message, "needed only for --play and `soprano play`")]
    except Exception as error:  # PortAudio raises its own PortAudioError on a broken host API
        return [Check("audio", WARN, f"PortAudio failed: {error}", "needed only for --play and `soprano play`")]
    if not devices:
        return [Check("audio", WARN, "PortAudio works, but there is no output device",
                      "start a sound server (PulseAudio/PipeWire) for --play and `soprano play`")]
    default = next((device.name for device in devices if device.is_default), devices[0].name)
    return [Check("audio", OK, f"{len(devices)} output device(s); default: {default}")]


def check_ffmpeg() -> list[Check]:
    import shutil
    import subprocess

    from soprano_cli.audio.formats import ffmpeg_formats

    needs = ", ".join(ffmpeg_formats())
    path = shutil.which("ffmpeg")
    if path is None:
        return [Check("ffmpeg", WARN, f"not found on PATH; {needs} output needs it",
                      "install ffmpeg (e.g. apt install ffmpeg) for those formats; wav, pcm and the rest work without it")]
    try:
        first = subprocess.run([path, "-hide_banner", "-version"], capture_output=True, text=True,
                               timeout=5).stdout.partition("\n")[0]
    except (OSError, subprocess.SubprocessError) as error:
        return [Check("ffmpeg", WARN, f"{path} does not run ({error}); {needs} output needs it",
                      "reinstall ffmpeg")]
    version = first.split()[2] if first.startswith("ffmpeg version ") else "unknown version"
    return [Check("ffmpeg", OK, f"ffmpeg {version} at {path} (encodes {needs})")]


def check_model() -> list[Check]:
    from soprano_cli.engine import checkpoint
    from soprano_cli.errors import ModelLoadError, ModelNotFoundError

    name = checkpoint.default_model()
    offline = " (HF_HUB_OFFLINE is set)" if checkpoint.hub_offline() else ""
    try:
        path = checkpoint.resolve_model(name, download=False)
    except ModelNotFoundError:
        if checkpoint.is_hub_id(name) and not checkpoint.hub_offline():
            # Only promise a download the hub can serve: offline, the first synthesis fails instead.
            if checkpoint.hub_reachable(name):
                return [Check("model.cache", WARN, f"{name} is not cached in {checkpoint.hub_cache_dir()}",
                              f"the first synthesis downloads it; or run `soprano models download {name}` now")]
            offline = f" and the hub ({checkpoint.hub_endpoint()}) does not answer"
        where = f"not cached in {checkpoint.hub_cache_dir()}{offline}" if checkpoint.is_hub_id(name) else "no such folder"
        return [Check("model.cache", FAIL, f"{name}: {where}",
                      "run `soprano models download` while online, or set SOPRANO_MODEL to a model folder")]
    except ModelLoadError as error:
        return [Check("model.cache", FAIL, error.message, f"run `soprano models rm {name}`, then download it again")]
    missing = [file for file in checkpoint.MODEL_FILES if not (path / file).is_file()]
    if missing:
        return [Check("model.cache", FAIL, f"{name} at {path} lacks {', '.join(missing)}",
                      "point SOPRANO_MODEL at a complete checkpoint folder")]
    return [Check("model.cache", OK, f"{name} at {path}{offline}")]


def check_daemon() -> list[Check]:
    try:
        from soprano_cli.server.client import DISABLED, default_socket_path, find_daemon, probe_socket
    except ImportError:
        return [Check("daemon", INFO, "this build has no daemon client")]
    setting = os.environ.get("SOPRANO_SERVER", "").strip()
    if setting.lower() in DISABLED:
        return [Check("daemon", INFO, f"disabled by SOPRANO_SERVER={setting}")]
    url = find_daemon(timeout=0.2)
    if url is None:
        return [Check("daemon", INFO, f"not running (socket {default_socket_path()})",
                      "`soprano serve` keeps the model loaded so that each `soprano synth` starts at once")]
    if url.startswith("unix:"):
        up = probe_socket(url[len("unix:"):], timeout=0.5)
    else:
        up = _probe_http(url)
    if up:
        return [Check("daemon", OK, f"running at {url}")]
    return [Check("daemon", WARN, f"SOPRANO_SERVER={setting} does not answer",
                  "start `soprano serve`, or unset SOPRANO_SERVER (or set it to none)")]


def _probe_http(url: str, timeout: float = 0.5) -> bool:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    try:
        connection = kind(parts.hostname or "localhost", parts.port, timeout=timeout)
        connection.request("GET", "/health")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False


def check_precision() -> list[Check]:
    """Which kernels each precision gets on this CPU, and what `--dtype auto` chose here so far."""
    torch, _ = _torch()
    if torch is None:
        return [Check("precision.auto", INFO, "no torch")]
    from soprano_cli.engine import precision_probe

    kernels = precision_probe.cpu_kernels()
    candidates = precision_probe.candidates(torch.device("cpu"))
    detail = (f"int8: {kernels['int8']}; bfloat16: {kernels['bfloat16']}; auto tries "
              f"{', '.join(candidates) or 'nothing'} against float32")
    decisions = precision_probe.decisions_on_this_cpu()
    if not decisions:
        return [Check("precision.auto", INFO, detail + "; no model probed on this CPU yet",
                      "the first `--dtype auto` load probes each candidate's audio once and remembers")]
    shown = "; ".join(f"{Path(model).name}: {decision.summary()}" for model, decision in decisions)
    return [Check("precision.auto", OK, f"{detail}; {shown}")]


CHECKS: tuple[Callable[[], list[Check]], ...] = (
    check_python, check_torch, check_devices, check_backends, check_cpu, check_precision, check_audio, check_ffmpeg, check_model,
    check_daemon,
)


def run_checks() -> list[Check]:
    """Every check, in order; exit status 1 belongs to any FAIL among them."""
    return [result for check in CHECKS for result in check()]
