"""Time-stretch quality and cost (ours against PyPI's WSOLA and phase vocoders), and loudness measurement cost.

Run: python benchmarks/bench_shaping.py [--input speech.wav] [--speeds 0.5,0.8,1.25,2] [--repeat 5]

Quality, per method and speed, on a voice-like test signal (or --input, mono, resampled to 32 kHz):
- pitch: median |f0 out / f0 in - 1| over voiced 64 ms frames, each output frame compared with
  the input frame at the same relative time (a pitch-preserving stretch keeps it near 0);
- spectrum: the log-spectral distance (dB) between the input's and the output's long-term average
  spectra (a stretch should change timing, not timbre);
- length: output samples minus round(input / speed);
- seam (ours only): the largest sample step at a 64 ms chunk boundary, over the input's largest step.
Cost: seconds of input stretched per wall second (x real time), median of --repeat runs, the
methods interleaved so machine noise hits them alike. Competitors that are not installed
(`pip install pytsmod audiotsm`) are left out of the table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from soprano_cli.audio.loudness import integrated_loudness, loudness_gain
from soprano_cli.audio.stretch import TimeStretcher, stretch

RATE = 32000
CHUNK = 2048  # one 64 ms frame of the model: what live streaming hands over


def voice_like(seconds: float = 6.0, seed: int = 0) -> np.ndarray:
    """Syllables: a harmonic source with a gliding pitch through two formant resonances, with gaps and noise."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.8 * t) + 10 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    source = sum(np.sin(k * phase) / k for k in range(1, 30))
    envelope = np.clip(np.sin(2 * np.pi * 2.5 * t) * 1.5, 0, 1) ** 0.5  # 5 syllables a second with gaps
    signal = source * envelope + 0.02 * rng.standard_normal(t.size)
    for formant, width in ((700, 130), (1200, 150)):
        r = np.exp(-np.pi * width / RATE)
        theta = 2 * np.pi * formant / RATE
        signal = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], signal)
    return (0.3 * signal / np.abs(signal).max()).astype(np.float32)


def f0_track(audio: np.ndarray, frame: int = 2048) -> np.ndarray:
    """Autocorrelation f0 per frame (nan where unvoiced)."""
    out = []
    for start in range(0, audio.size - frame, frame):
        x = audio[start:start + frame].astype(np.float64)
        x = x - x.mean()
        if np.sqrt(np.mean(x ** 2)) < 0.01:
            out.append(np.nan)
            continue
        corr = np.correlate(x, x, "full")[frame - 1:]
        low, high = RATE // 400, RATE // 60
        lag = low + int(np.argmax(corr[low:high]))
        out.append(RATE / lag if corr[lag] > 0.4 * corr[0] else np.nan)
    return np.array(out)


def pitch_error(original: np.ndarray, stretched: np.ndarray) -> float:
    a, b = f0_track(original), f0_track(stretched)
    n = min(a.size, b.size)
    positions = np.linspace(0, a.size - 1, b.size).round().astype(int)  # same relative time
    ratio = b / a[positions]
    ratio = ratio[np.isfinite(ratio)][:max(n, 1) * 4]
    return float(np.median(np.abs(ratio - 1))) if ratio.size else float("nan")


def spectral_distance(original: np.ndarray, stretched: np.ndarray) -> float:
    def average(x):
        frames = np.lib.stride_tricks.sliding_window_view(x, 1024)[::512] * np.hanning(1024)
        return np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0) + 1e-12

    a, b = average(original), average(stretched)
    a, b = a / a.sum(), b / b.sum()
    return float(np.sqrt(np.mean((10 * np.log10(a / b)) ** 2)))


def ours_streamed(audio: np.ndarray, speed: float) -> tuple[np.ndarray, float]:
    stretcher = TimeStretcher(speed)
    parts = [stretcher.process(audio[i:i + CHUNK]) for i in range(0, audio.size, CHUNK)]
    parts.append(stretcher.flush())
    out = np.concatenate(parts)
    seams = np.cumsum([p.size for p in parts[:-1]])
    seams = seams[(seams > 0) & (seams < out.size)]
    steps = np.abs(np.diff(out))
    seam = steps[seams - 1].max(initial=0) / np.abs(np.diff(audio)).max()
    return out, float(seam)


def methods() -> dict:
    found = {"soprano wsola (streamed)": lambda x, s: ours_streamed(x, s)[0]}
    try:
        import pytsmod

        found["pytsmod wsola"] = lambda x, s: np.asarray(pytsmod.wsola(x, 1 / s), np.float32)
        found["pytsmod phase vocoder"] = lambda x, s: np.asarray(pytsmod.phase_vocoder(x, 1 / s), np.float32)
    except ImportError:
        pass
    try:
        from audiotsm import wsola as audiotsm_wsola
        from audiotsm.io.array import ArrayReader, ArrayWriter

        def audiotsm_run(x, s):
            reader, writer = ArrayReader(x.reshape(1, -1)), ArrayWriter(1)
            audiotsm_wsola(1, speed=s).run(reader, writer)
            return writer.data.reshape(-1).astype(np.float32)

        found["audiotsm wsola"] = audiotsm_run
    except ImportError:
        pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help="a speech recording (mono, any rate) instead of the test signal")
    parser.add_argument("--speeds", default="0.5,0.8,1.25,2")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.input:
        import soundfile

        from soprano_cli.audio.resample import resample

        audio, rate = soundfile.read(args.input, dtype="float32", always_2d=True)
        audio = resample(audio.mean(axis=1), rate, RATE) if rate != RATE else audio.mean(axis=1)
    else:
        audio = voice_like()
    seconds = audio.size / RATE
    table = methods()
    print(f"input: {args.input or 'voice-like test signal'}, {seconds:.1f} s; x real time = input seconds per wall second")
    print(f"{'method':28} {'speed':>5} {'pitch err':>9} {'LSD dB':>7} {'length':>7} {'x RT':>7}")
    for speed in (float(s) for s in args.speeds.split(",")):
        times = {name: [] for name in table}
        outputs = {}
        for _ in range(args.repeat):
            for name, run in table.items():  # interleaved
                start = time.perf_counter()
                outputs[name] = run(audio, speed)
                times[name].append(time.perf_counter() - start)
        for name, out in outputs.items():
            print(f"{name:28} {speed:5.2f} {pitch_error(audio, out):9.4f} {spectral_distance(audio, out):7.2f} "
                  f"{out.size - round(audio.size / speed):7d} {seconds / statistics.median(times[name]):7.0f}")
        _, seam = ours_streamed(audio, speed)
        assert np.array_equal(ours_streamed(audio, speed)[0], stretch(audio, speed))
        print(f"{'  (ours: streamed == whole; worst seam step / input step':28} {seam:.3f})")

    three = audio[:3 * RATE]
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        loudness_gain(three, RATE, -16.0)
        times.append(time.perf_counter() - start)
    print(f"loudness: measuring 3 s (pyloudnorm, BS.1770) takes {statistics.median(times) * 1000:.1f} ms "
          f"(once per stream); the test signal is {integrated_loudness(audio, RATE):.1f} LUFS")


if __name__ == "__main__":
    main()
