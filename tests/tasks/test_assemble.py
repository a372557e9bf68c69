"""Assembly decides the encoding: segments are finer only when it encodes them again."""

from __future__ import annotations

from nst_video.tasks.assemble import SEGMENT_CRF, reencodes, segment_crf


def test_segments_are_finer_only_when_assembly_encodes_again():
    assert not reencodes([0]) and segment_crf([0], 18) == 18  # one chunk: joined as it is
    assert segment_crf([0, 0], 23) == 23  # every chunk starts at a scene cut: no fade
    assert reencodes([0, 8]) and segment_crf([0, 8], 18) == SEGMENT_CRF
    assert segment_crf([0, 8], 10) == 10  # never coarser than asked
