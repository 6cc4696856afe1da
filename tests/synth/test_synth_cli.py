"""`soprano synth` as a Unix filter: the real command, the tiny checkpoint, real decoders reading back."""

from __future__ import annotations

import io
import json
import os
import pty
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
from checkpoints import samples
from system_deps import have

HELLO = "Hello world!"  # normalizes to the golden case "hello world!"
HELLO_SAMPLES = samples("hello world!")
FOX_SAMPLES = samples("the quick brown fox jumps over the lazy dog.")
TWO_SENTENCES = "Hello world! The quick brown fox jumps over the lazy dog."


def srt_time(samples_at_32k: int) -> str:
    milliseconds = round(samples_at_32k / 32)
    seconds, ms = divmod(milliseconds, 1000)
    return f"00:{seconds // 60:02d}:{seconds % 60:02d},{ms:03d}"


def read_wav(data: bytes):
    audio, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    return audio, rate


def test_argument_text_to_wav_file_matches_the_reference_audio(synth, tmp_path, golden):
    out = tmp_path / "hello.wav"
    result = synth(HELLO, "-o", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"" and result.stderr == b""
    audio, rate = soundfile.read(out, dtype="float32")
    assert rate == 32000 and audio.shape == (HELLO_SAMPLES,)
    _, arrays = golden
    np.testing.assert_allclose(audio, arrays["audio_1"], atol=1.5 / 32768)  # s16 rounding


def test_stdin_to_stdout_streamed_wav_is_readable_by_every_tool(synth, tmp_path):
    result = synth("--min-seconds", "0", input=TWO_SENTENCES)
    assert result.returncode == 0, result.stderr
    data = result.stdout
    assert data[:4] == b"RIFF" and data[4:8] == b"\xff\xff\xff\xff"  # length unknown while streaming
    audio, rate = read_wav(data)
    assert rate == 32000 and audio.size == (HELLO_SAMPLES + FOX_SAMPLES)
    path = tmp_path / "piped.wav"
    path.write_bytes(data)
    if have("sox"):
        info = subprocess.run(["sox", "--info", "-r", str(path)], capture_output=True, text=True)
        assert info.returncode == 0 and info.stdout.strip() == "32000"
        decoded = subprocess.run(["sox", str(path), "-t", "raw", "-e", "signed", "-b", "16", "-"], capture_output=True)
        assert len(decoded.stdout) == audio.size * 2
    if have("ffmpeg"):
        probe = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-"], capture_output=True)
        assert probe.returncode == 0 and len(probe.stdout) == audio.size * 2


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "opus", "mp3", "pcm"])
def test_each_output_format_reads_back(synth, tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    result = synth(HELLO, "-o", out)
    assert result.returncode == 0, result.stderr
    seconds = HELLO_SAMPLES / 32000
    if fmt == "pcm":
        samples = np.frombuffer(out.read_bytes(), dtype="<i2")
        assert samples.size == HELLO_SAMPLES
        return
    if have("ffmpeg"):
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(out)],
                               capture_output=True, text=True)
        assert probe.returncode == 0, probe.stderr
        assert abs(float(probe.stdout) - seconds) < 0.1
    if fmt in ("wav", "flac", "ogg") and have("sox"):
        info = subprocess.run(["sox", "--info", "-D", str(out)], capture_output=True, text=True)
        assert info.returncode == 0 and abs(float(info.stdout) - seconds) < 0.1
    audio, rate = soundfile.read(out, dtype="float32")
    assert rate == (48000 if fmt == "opus" else 32000)
    assert abs(audio.shape[0] / rate - seconds) < 0.1


@pytest.mark.parametrize("fmt", ["wav", "pcm", "flac", "ogg", "mp3"])
def test_format_option_on_stdout(synth, fmt):
    result = synth(HELLO, "--format", fmt)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) > 1000


@pytest.mark.parametrize("rate", [24000, 22050, 16000, 8000])
def test_sample_rate_resamples(synth, tmp_path, rate):
    out = tmp_path / "r.wav"
    assert synth(HELLO, "-o", out, "--sample-rate", rate).returncode == 0
    audio, got = soundfile.read(out)
    assert got == rate
    assert abs(audio.size - HELLO_SAMPLES * rate / 32000) <= 2


def test_float_pcm_streaming_equals_file_output(synth, tmp_path):
    out = tmp_path / "file.pcm"
    assert synth(TWO_SENTENCES, "-o", out, "--sample-format", "f32").returncode == 0
    streamed = synth(TWO_SENTENCES, "--streaming", "--format", "pcm", "--sample-format", "f32")
    assert streamed.returncode == 0, streamed.stderr
    a = np.frombuffer(out.read_bytes(), dtype="<f4")
    b = np.frombuffer(streamed.stdout, dtype="<f4")
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_normalize_split_lines_pipeline_gives_the_same_audio(synth, tmp_path):
    text = "Dr. Smith paid $5.50 on Jan. 3rd. Then he left at 7:05 pm!\nIt was 20% cheaper."
    env = {**os.environ}
    normalized = subprocess.run([sys.executable, "-m", "soprano_cli", "normalize"], input=text.encode(),
                                capture_output=True, env=env, check=True).stdout
    chunks = subprocess.run([sys.executable, "-m", "soprano_cli", "split"], input=normalized,
                            capture_output=True, env=env, check=True).stdout
    piped = synth("--lines", "--no-normalize", "--format", "pcm", "--sample-format", "f32", input=chunks)
    plain = synth("--format", "pcm", "--sample-format", "f32", input=text)
    assert piped.returncode == 0 and plain.returncode == 0, (piped.stderr, plain.stderr)
    # The same sentences, so the same frames; the samples may differ in float32's last bits, since
    # the two runs may batch the sentences differently.
    piped_audio, plain_audio = np.frombuffer(piped.stdout, "<f4"), np.frombuffer(plain.stdout, "<f4")
    assert plain_audio.size > 0 and piped_audio.size == plain_audio.size
    np.testing.assert_allclose(piped_audio, plain_audio, atol=1e-6, rtol=0)


def test_sentence_silence_and_captions(synth, tmp_path):
    out, srt, vtt = tmp_path / "s.wav", tmp_path / "s.srt", tmp_path / "s.vtt"
    assert synth(TWO_SENTENCES, "-o", out, "--sentence-silence", "0.5", "--captions", srt,
                 "--min-seconds", "0").returncode == 0
    audio, _ = soundfile.read(out)
    assert audio.size == (HELLO_SAMPLES + FOX_SAMPLES) + 16000
    assert np.abs(audio[HELLO_SAMPLES:HELLO_SAMPLES + 16000]).max() == 0
    cues = srt.read_text().strip().split("\n\n")
    assert len(cues) == 2
    assert cues[0].splitlines()[1] == f"00:00:00,000 --> {srt_time(HELLO_SAMPLES)}"
    assert cues[1].splitlines()[1] == f"{srt_time(HELLO_SAMPLES + 16000)} --> {srt_time(HELLO_SAMPLES + 16000 + FOX_SAMPLES)}"
    assert cues[1].splitlines()[2] == "The quick brown fox jumps over the lazy dog."
    assert synth(TWO_SENTENCES, "-o", out, "--captions", vtt, "--min-seconds", "0").returncode == 0
    assert vtt.read_text().startswith("WEBVTT")


def test_first_sentence_is_spoken_before_input_ends(tiny_checkpoint):
    command = [sys.executable, "-m", "soprano_cli", "synth", "--model", str(tiny_checkpoint), "--streaming",
               "--format", "pcm"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        process.stdin.write(b"Hello world!\n")
        process.stdin.flush()
        first = process.stdout.read1(4096)  # arrives while stdin is still open
        assert len(first) > 0
        assert process.poll() is None
        process.stdin.write(b"The quick brown fox jumps over the lazy dog.\n")
        process.stdin.close()
        rest = process.stdout.read()
        assert process.wait(60) == 0
        assert len(first) + len(rest) == (HELLO_SAMPLES + FOX_SAMPLES) * 2
    finally:
        process.kill()


def test_refuses_to_write_audio_to_a_terminal(tiny_checkpoint):
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "soprano_cli", "synth", "--model", str(tiny_checkpoint), HELLO],
                                stdout=terminal, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 6
    assert result.stderr.decode().strip() == (
        "soprano: error: refusing to write audio to a terminal; use -o FILE, a pipe, or --streaming to play it")


def test_closed_pipe_ends_quietly(tiny_checkpoint):
    text = " ".join([TWO_SENTENCES] * 20)
    command = f"{sys.executable} -m soprano_cli synth --model {tiny_checkpoint} --streaming | head -c 1000 > /dev/null"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], input=text.encode(), capture_output=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""


def _ctrl_c_acts():
    """In the child: Ctrl-C's default action, which Python turns into KeyboardInterrupt. A run of
    these tests started as a background job of a script inherits SIGINT ignored, and Python then
    leaves it ignored (as nohup wants), so the interrupt these tests send would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_leaves_a_valid_shorter_file(tiny_checkpoint, tmp_path):
    out = tmp_path / "partial.wav"
    text = " ".join([TWO_SENTENCES] * 30)
    process = subprocess.Popen([sys.executable, "-m", "soprano_cli", "synth", "--model", str(tiny_checkpoint),
                                "--streaming", "-o", str(out), "--max-batch", "1"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=_ctrl_c_acts)
    process.stdin.write(text.encode())
    process.stdin.close()
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.stat().st_size < 100_000):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    assert process.wait(10) == 130
    assert process.stderr.read().decode().strip() == "soprano: error: interrupted"
    audio, rate = soundfile.read(out)
    assert rate == 32000 and 0 < audio.size < 30 * (HELLO_SAMPLES + FOX_SAMPLES)
    info = soundfile.info(out)
    assert info.frames == audio.size  # the header was patched with the real length


def test_ctrl_c_keeps_every_finished_sentence(tiny_checkpoint, tmp_path):
    # Issue 15: a file got a sentence only once every sentence before it had ended, and Ctrl-C
    # dropped the rest: here sentence 2 (40 frames) ends long before sentence 1 (about 150), so
    # an interrupted 16-sentence batch left 0 samples. Now the finished one is written.
    long = "Echo sierra charlie india delta papa oscar papa."
    text = " ".join([long, HELLO] + [long] * 14)
    out, srt = tmp_path / "partial.wav", tmp_path / "partial.srt"
    process = subprocess.Popen([sys.executable, "-m", "soprano_cli", "synth", "--model", str(tiny_checkpoint),
                                "--dtype", "float32", "--min-seconds", "0", "-v", "-o", str(out),
                                "--captions", str(srt), text],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=_ctrl_c_acts)
    try:
        lines = []
        deadline = time.time() + 120
        while time.time() < deadline:
            line = process.stderr.readline().decode()
            lines.append(line)
            if not line or "sentence 2 finished" in line:
                break
        assert "sentence 2 finished" in lines[-1], lines
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
    finally:
        process.kill()
    stderr = process.stderr.read().decode().strip().splitlines()
    assert stderr[-1] == "soprano: error: interrupted"
    assert "wrote finished sentence 2 without unfinished sentence 1 before it" in stderr[-2]
    audio, rate = soundfile.read(out)
    assert rate == 32000 and audio.size == HELLO_SAMPLES
    assert soundfile.info(out).frames == HELLO_SAMPLES  # the header was patched with the real length
    cues = srt.read_text().strip().splitlines()
    assert cues == ["1", f"00:00:00,000 --> {srt_time(HELLO_SAMPLES)}", HELLO]


def _interrupt_while_writing(tiny_checkpoint, out, sig=signal.SIGINT) -> tuple[int, float, bytes]:
    """Start `synth -o out`, send `sig` the moment the file grows (mid-write); (exit code, seconds to exit, stderr)."""
    process = subprocess.Popen([sys.executable, "-m", "soprano_cli", "synth", "--model", str(tiny_checkpoint),
                                "--min-seconds", "0", "--max-batch", "4", "-o", str(out), " ".join([HELLO] * 40)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=_ctrl_c_acts)
    try:
        deadline = time.time() + 120
        first = None
        while time.time() < deadline and process.poll() is None:
            size = out.stat().st_size if out.exists() else 0
            if first is None and size:
                first = size  # the header
            elif first is not None and size > max(first, 4096):
                break  # sentences are being encoded right now
            time.sleep(0.002)
        assert process.poll() is None, "the run ended before it could be interrupted"
        process.send_signal(sig)
        sent = time.time()
        code = process.wait(30)
        return code, time.time() - sent, process.stderr.read()
    finally:
        process.kill()


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3", "opus"])
def test_ctrl_c_during_encoding_leaves_a_valid_file(tiny_checkpoint, tmp_path, fmt):
    # Issue 23 item 3: Ctrl-C landed inside libsndfile's write callback, which cannot pass the
    # exception on: mp3 runs went on to exit 0 with corrupt frames, a flac one exited 1 with a
    # header claiming 2^63 frames. The signal now waits until the encoder's write has returned.
    out = tmp_path / f"out.{fmt}"
    code, seconds, stderr = _interrupt_while_writing(tiny_checkpoint, out)
    assert code == 130, stderr
    assert seconds < 5 and stderr.decode().strip().splitlines()[-1] == "soprano: error: interrupted", stderr
    _assert_playable(out, fmt)


def test_sigterm_during_encoding_leaves_a_valid_file(tiny_checkpoint, tmp_path):
    # Issue 23 item 3: SIGTERM killed the process mid-write, leaving flac's header unwritten.
    out = tmp_path / "out.flac"
    code, seconds, stderr = _interrupt_while_writing(tiny_checkpoint, out, signal.SIGTERM)
    assert code == 143 and seconds < 5, stderr
    assert stderr.decode().strip().splitlines()[-1] == "soprano: error: terminated"
    _assert_playable(out, "flac")


def _assert_playable(out, fmt: str) -> None:
    """The file decodes to its end without an error, to whole sentences' worth of audio at most."""
    audio, rate = soundfile.read(out, dtype="float32")
    expected_rate = 48000 if fmt == "opus" else 32000
    assert rate == expected_rate and 0 < audio.size <= 40 * HELLO_SAMPLES * rate // 32000 + rate, audio.size
    if fmt in ("wav", "flac"):
        assert soundfile.info(out).frames == audio.size  # the header holds the real length
    if have("ffmpeg"):
        decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"], capture_output=True)
        assert decoded.returncode == 0 and decoded.stderr == b"", decoded.stderr


@pytest.mark.parametrize("args,stdin,code,message", [
    ((), b"", 3, "no text to synthesize"),
    ((), b"   \n\n", 3, "no text to synthesize"),
    ((), b"\xff\xfe bad", 3, "invalid UTF-8"),
    (("hi", "-o", "out.xyz"), b"", 6, ".xyz"),
    (("hi", "--format", "aiff"), b"", 6, "aiff"),
    (("hi", "-o", "/nonexistent/dir/out.wav"), b"", 6, "cannot write /nonexistent/dir/out.wav"),
    (("hi", "--captions", "subs.txt", "-o", "x.wav"), b"", 6, "caption"),
    (("hi", "--temperature", "-1"), b"", 2, "temperature"),
    (("hi", "--device", "tpu"), b"", 2, "unknown device"),
])
def test_bad_input_gives_one_line_and_a_distinct_exit_code(synth, tmp_path, monkeypatch, args, stdin, code, message):
    monkeypatch.chdir(tmp_path)
    result = synth(*args, input=stdin)
    assert result.returncode == code, result.stderr
    lines = result.stderr.decode().strip().splitlines()
    assert message in lines[-1]
    assert "Traceback" not in result.stderr.decode()
    assert len([l for l in lines if l.startswith("soprano: error")]) <= 1


def test_missing_model_gives_exit_4(synth, tmp_path):
    result = synth("hi", "--model", tmp_path / "no-model", model=False)
    assert result.returncode == 4
    assert result.stderr.decode().count("\n") == 1 and "no model folder" in result.stderr.decode()


def test_offline_default_model_names_the_way_out(synth):
    result = synth("hi", model=False)
    assert result.returncode == 4
    assert "--model PATH" in result.stderr.decode()


def test_model_from_the_environment(synth, tiny_checkpoint, tmp_path):
    out = tmp_path / "env.wav"
    result = synth(HELLO, "-o", out, model=False, env={"SOPRANO_MODEL": str(tiny_checkpoint)})
    assert result.returncode == 0, result.stderr
    assert soundfile.info(out).frames == HELLO_SAMPLES


def test_upstream_compatible_options(synth, tmp_path, tiny_checkpoint):
    out = tmp_path / "up.wav"
    result = synth(HELLO, "-o", out, "-m", tiny_checkpoint, "-d", "cpu", "-b", "torch", "-c", "50", "-bs", "2",
                   model=False)
    assert result.returncode == 0, result.stderr
    assert soundfile.info(out).frames == HELLO_SAMPLES


def test_sampling_options_are_reproducible(synth):
    args = (TWO_SENTENCES, "--format", "pcm", "--temperature", "0.8", "--top-p", "0.9", "--seed", "7",
            "--repetition-penalty", "1.1", "--retries", "1")
    first, second = synth(*args), synth(*args)
    assert first.returncode == 0 and first.stdout == second.stdout
    capped = synth(HELLO, "--format", "pcm", "--max-frames", "10")
    assert len(capped.stdout) == 9 * 2048 * 2
    assert "cap" in capped.stderr.decode()
    assert synth(HELLO, "--format", "pcm", "--max-frames", "10", "-q").stderr == b""


def test_jsonl_batch_writes_every_file_with_one_load(synth, tmp_path):
    jobs = [{"text": HELLO, "output": str(tmp_path / "a.wav")},
            {"text": TWO_SENTENCES, "output": str(tmp_path / "b.flac")},
            {"text": "The quick brown fox jumps over the lazy dog.", "output": str(tmp_path / "c.mp3")}]
    stdin = "\n".join(json.dumps(job) for job in jobs) + "\n"
    result = synth("--jsonl", "--min-seconds", "0", "-v", input=stdin)
    assert result.returncode == 0, result.stderr
    assert soundfile.info(tmp_path / "a.wav").frames == HELLO_SAMPLES
    assert soundfile.info(tmp_path / "b.flac").frames == (HELLO_SAMPLES + FOX_SAMPLES)
    assert (tmp_path / "c.mp3").stat().st_size > 1000
    summary = result.stderr.decode().strip().splitlines()[-1]
    assert summary.startswith("soprano: 3 files, ") and "real time" in summary


def test_bad_jsonl_jobs_fail_alone_and_are_named(synth, tmp_path):
    # Issue 23 item 8: one bad job (a bad line, an unwritable path, nothing speakable) raised at
    # once and threw away the good jobs before it that were not yet written (up to 16 sentences).
    lines = [json.dumps({"text": HELLO, "output": str(tmp_path / "a.wav")}),
             "not json",
             json.dumps({"text": "... !!!", "output": str(tmp_path / "silent.wav")}),
             json.dumps({"text": HELLO, "output": str(tmp_path / "missing" / "x.wav")}),
             json.dumps({"text": HELLO, "output": str(tmp_path / "x.xyz")}),
             json.dumps({"output": str(tmp_path / "y.wav")}),
             json.dumps({"text": TWO_SENTENCES, "output": str(tmp_path / "b.flac")})]
    result = synth("--jsonl", "--min-seconds", "0", input="\n".join(lines) + "\n")
    assert result.returncode == 10, result.stderr
    assert soundfile.info(tmp_path / "a.wav").frames == HELLO_SAMPLES
    assert soundfile.info(tmp_path / "b.flac").frames == (HELLO_SAMPLES + FOX_SAMPLES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.flac"]
    errors = result.stderr.decode().splitlines()
    assert errors[0] == "soprano: error: 5 of 7 jobs failed (2 written):"
    assert errors[1].startswith("  stdin line 2: invalid JSON")
    assert errors[2] == "  stdin line 3: no text to synthesize"
    assert errors[3].startswith("  stdin line 4: cannot write ") and "No such file or directory" in errors[3]
    assert errors[4].startswith("  stdin line 5: cannot tell the audio format")
    assert errors[5].startswith('  stdin line 6: expected {"text"')
    assert len(errors) == 6


def test_jsonl_jobs_from_files_named_as_arguments(synth, tmp_path):
    first, second = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    first.write_text(json.dumps({"text": HELLO, "output": str(tmp_path / "a.wav")}) + "\n")
    second.write_text("\n{not json\n")
    result = synth("--jsonl", str(first), str(second))
    assert result.returncode == 10, result.stderr
    assert soundfile.info(tmp_path / "a.wav").frames == HELLO_SAMPLES
    assert f"  {second} line 2: invalid JSON" in result.stderr.decode()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = synth("--jsonl", str(empty))
    assert result.returncode == 3 and f"no jobs in {empty}" in result.stderr.decode()
    result = synth("--jsonl", str(tmp_path / "missing.jsonl"))
    assert result.returncode == 3 and "cannot read" in result.stderr.decode()


def test_empty_jsonl_input_is_an_input_error(synth):
    for stdin in ("", "\n  \n"):
        result = synth("--jsonl", input=stdin)
        assert result.returncode == 3 and "no jobs on stdin" in result.stderr.decode()


def test_undecodable_input_file_fails_alone(synth, tmp_path):
    # Issue 23 item 8: one non-UTF-8 file in --input-dir ended the run before any file was written.
    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    (source / "a.txt").write_text(HELLO)
    (source / "b.txt").write_bytes(b"Hello \xff world.")
    (source / "c.txt").write_text(TWO_SENTENCES)
    result = synth("--input-dir", source, "--output-dir", target, "--min-seconds", "0")
    assert result.returncode == 10, result.stderr
    assert sorted(p.name for p in target.iterdir()) == ["a.wav", "c.wav"]
    assert soundfile.info(target / "c.wav").frames == (HELLO_SAMPLES + FOX_SAMPLES)
    assert result.stderr.decode().splitlines() == [
        "soprano: error: 1 of 3 jobs failed (2 written):", f"  {source / 'b.txt'}: invalid UTF-8 at byte offset 6"]


def test_input_dir_to_output_dir(synth, tmp_path):
    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    (source / "one.txt").write_text(HELLO)
    (source / "two.txt").write_text(TWO_SENTENCES)
    (source / "notes.md").write_text("ignored")
    result = synth("--input-dir", source, "--output-dir", target, "--format", "flac", "--min-seconds", "0", "-v")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in target.iterdir()) == ["one.flac", "two.flac"]
    assert soundfile.info(target / "two.flac").frames == (HELLO_SAMPLES + FOX_SAMPLES)
    assert "2 files" in result.stderr.decode()


def _silent_runs(audio: np.ndarray, length: int) -> list[tuple[int, int]]:
    """(start, length) of each run of exact zeros at least `length` samples long."""
    runs, start = [], None
    for i, zero in enumerate(np.append(audio == 0, False)):
        if zero and start is None:
            start = i
        elif not zero and start is not None:
            if i - start >= length:
                runs.append((start, i - start))
            start = None
    return runs


def test_sentence_silence_and_captions_are_per_sentence_not_per_chunk(synth, tmp_path):
    # Issue 15: short sentences were merged into one chunk first, so "One. Two. Three." got no
    # silence and one cue, although --help and the README say "between sentences".
    out, srt = tmp_path / "s.wav", tmp_path / "s.srt"
    result = synth("-o", out, "--sentence-silence", "0.3", "--captions", srt, "One. Two. Three.")
    assert result.returncode == 0, result.stderr
    audio, _ = soundfile.read(out)
    assert [length for _, length in _silent_runs(audio, 9600)] == [9600, 9600]
    cues = [cue.splitlines() for cue in srt.read_text().strip().split("\n\n")]
    assert [cue[2] for cue in cues] == ["One.", "Two.", "Three."]
    # Each cue ends where its silence starts and the next starts 0.3 s later.
    silences = _silent_runs(audio, 9600)
    for (start, _), cue, following in zip(silences, cues, cues[1:]):
        assert cue[1].split(" --> ")[1] == _srt_time(start / 32000)
        assert following[1].split(" --> ")[0] == _srt_time(start / 32000 + 0.3)
    # Captions alone also keep sentences apart; so do batch jobs with silence.
    assert synth("-o", out, "--captions", srt, "One. Two. Three.").returncode == 0
    assert srt.read_text().count("-->") == 3
    job = json.dumps({"text": "One. Two. Three.", "output": str(tmp_path / "job.wav")})
    assert synth("--jsonl", "--sentence-silence", "0.3", input=job + "\n").returncode == 0
    batch, _ = soundfile.read(tmp_path / "job.wav")
    np.testing.assert_array_equal(batch, audio)


def _srt_time(seconds: float) -> str:
    from soprano_cli.audio.captions import format_timestamp

    return format_timestamp(seconds, "srt")


def _peak_rss_mb(command: list, env: dict) -> float:
    """Run `command` in a fresh child and return its peak resident memory (MB)."""
    probe = ("import resource, subprocess, sys\n"
             "code = subprocess.run(sys.argv[1:]).returncode\n"
             "assert code == 0, code\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    result = subprocess.run([sys.executable, "-c", probe, *map(str, command)], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    return float(result.stdout)


def test_batch_memory_does_not_grow_with_the_file(tiny_checkpoint, tmp_path):
    # Issue 23 item 2: a batch job kept a whole file's audio (and its frames) in memory until the
    # file was written: a 10 KB text peaked at 1.53 GB, a 2 MB one grew without bound. Each file
    # now streams to disk sentence by sentence. Here 4x the text (40 -> 160 capped sentences)
    # raised the old peak by ~1.5x; streamed, the peak stays flat.
    import random

    rng = random.Random(23)
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()
    text = [" ".join(rng.choice(words) for _ in range(8)).capitalize() + "." for _ in range(160)]
    peaks = {}
    for name, count in (("short", 40), ("long", 160)):
        source = tmp_path / name
        source.mkdir()
        (source / "a.txt").write_text(" ".join(text[:count]))
        command = [sys.executable, "-m", "soprano_cli", "synth", "--model", tiny_checkpoint, "--input-dir", source,
                   "--output-dir", tmp_path / f"{name}-out", "--max-frames", "40", "--min-seconds", "0", "-q"]
        peaks[name] = _peak_rss_mb(command, {**os.environ, "SOPRANO_DTYPE": "float32"})
        assert soundfile.info(tmp_path / f"{name}-out" / "a.wav").frames == count * 39 * 2048
    assert peaks["long"] < 1.3 * peaks["short"], peaks


def test_batch_write_failure_fails_that_job_alone(synth, tmp_path):
    # Issue 23 item 8: a write that fails (a full disk, here /dev/full) fails its own job only.
    full = tmp_path / "full.wav"
    full.symlink_to("/dev/full")
    lines = [json.dumps({"text": HELLO, "output": str(full)}),
             json.dumps({"text": HELLO, "output": str(tmp_path / "a.wav")})]
    result = synth("--jsonl", input="\n".join(lines) + "\n")
    assert result.returncode == 10, result.stderr
    assert soundfile.info(tmp_path / "a.wav").frames == HELLO_SAMPLES
    errors = result.stderr.decode().splitlines()
    assert errors[0] == "soprano: error: 1 of 2 jobs failed (1 written):"
    assert errors[1].startswith("  stdin line 1: cannot write wav audio to ") and "No space left" in errors[1]


def _sizes(folder):
    """Sizes of the files in `folder`, skipping one that vanishes meanwhile (a job's writability probe)."""
    for path in folder.glob("*.*"):
        try:
            yield path.stat().st_size
        except FileNotFoundError:
            pass


def test_ctrl_c_in_batch_mode_leaves_valid_files(tiny_checkpoint, tmp_path):
    # Issue 23 item 3, in batch mode: the files open when Ctrl-C comes are closed into valid ones.
    jobs = "".join(json.dumps({"text": " ".join([HELLO] * 10), "output": str(tmp_path / f"{n}.{fmt}")}) + "\n"
                   for n, fmt in enumerate(["mp3", "flac", "ogg", "wav"] * 3))
    process = subprocess.Popen([sys.executable, "-m", "soprano_cli", "synth", "--model", str(tiny_checkpoint),
                                "--jsonl", "--min-seconds", "0"],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=_ctrl_c_acts)
    try:
        process.stdin.write(jobs.encode())
        process.stdin.close()
        deadline = time.time() + 120
        while time.time() < deadline and not any(size > 4096 for size in _sizes(tmp_path)):
            time.sleep(0.005)
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
    finally:
        process.kill()
    assert process.stderr.read().decode().strip().splitlines()[-1] == "soprano: error: interrupted"
    written = list(tmp_path.glob("*.*"))
    assert written
    for path in written:
        audio, _ = soundfile.read(path)
        assert audio.size > 0, path  # a file opens with its first finished sentence
