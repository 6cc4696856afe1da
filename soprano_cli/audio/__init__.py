"""Audio I/O: streaming encoders, WAV/PCM reading (other formats decoded), resampling, captions and playback.

Imports here are light (numpy only); soundfile, soxr and sounddevice load when first used.
"""

from soprano_cli.audio.captions import captions_format_from_path, format_captions, write_captions
from soprano_cli.audio.formats import (
    MEDIA_TYPES,
    SUPPORTED_FORMATS,
    Encoder,
    encode,
    float_to_int16,
    format_from_path,
    open_encoder,
)
from soprano_cli.audio.playback import Player, list_devices, play
from soprano_cli.audio.reader import read_audio_stream
from soprano_cli.audio.resample import StreamResampler, resample

__all__ = [
    "MEDIA_TYPES",
    "SUPPORTED_FORMATS",
    "Encoder",
    "Player",
    "StreamResampler",
    "captions_format_from_path",
    "encode",
    "float_to_int16",
    "format_captions",
    "format_from_path",
    "list_devices",
    "open_encoder",
    "play",
    "read_audio_stream",
    "resample",
    "write_captions",
]
