"""Video I/O through the ffmpeg binary: probe, decode to numpy, encode, concat, mux audio, cuts.

Plain functions (no Prefect) so that they can be tested and reused on their own; the Prefect
tasks wrap them. This package's names are the API; its modules are the seams:

- process: the binaries, command lines (ffmpeg-python), processes and their errors
- header: the container header (ffprobe when present, else ``ffmpeg -i``)
- probing: VideoInfo, from the header plus one decode pass (exact frame count, VFR)
- frames: read_frames (frame-exact decode) and write_frames (H.264 encode)
- mux: concat and mux_audio (stream copy: no re-encode)
- scenes: scene scores and cuts
"""

from nst_video.tasks.video.frames import check_output_path, read_frames, write_frames
from nst_video.tasks.video.mux import concat, mux_audio
from nst_video.tasks.video.probing import VideoInfo, probe
from nst_video.tasks.video.process import (
    MIN_FFMPEG_VERSION,
    FFmpegError,
    ffmpeg_exe,
    ffmpeg_version,
)
from nst_video.tasks.video.scenes import detect_scene_cuts, scene_scores

__all__ = [
    "MIN_FFMPEG_VERSION",
    "FFmpegError",
    "VideoInfo",
    "check_output_path",
    "concat",
    "detect_scene_cuts",
    "ffmpeg_exe",
    "ffmpeg_version",
    "mux_audio",
    "probe",
    "read_frames",
    "scene_scores",
    "write_frames",
]
