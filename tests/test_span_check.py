"""The span agreement check of the CUDA tests (tests/span_check.py), on hand-made cases on CPU: it reads spans back
to clip pairs the way the span head's in-clip offsets decode them, so it cannot silently be wrong on a GPU."""

from __future__ import annotations

import pytest
import torch
from span_check import assert_spans_agree, assert_top_scoring, candidate_pairs, pair_scores

from tvgkit.grounding.model import decode_spans

N = 10  # clips


def _probs(start: int, end: int, runner_up: tuple[int, int] | None = None, gap: float = 0.0):
    """[1, N] start/end probabilities peaked at (start, end); a runner-up pair scoring ``gap`` lower (relative)."""
    ps, pe = torch.full((1, N), 0.01), torch.full((1, N), 0.01)
    ps[0, start], pe[0, end] = 0.5, 0.5
    if runner_up is not None:
        ps[0, runner_up[0]] = 0.5 * (1 - gap)
        pe[0, runner_up[1]] = 0.5
    return ps, pe


def _offsets(start_off: float, end_off: float):
    return torch.full((1, N), start_off), torch.full((1, N), end_off)


def test_the_first_gpu_runs_span_reads_back_to_its_clip_pair() -> None:
    # The span that broke the old helper: [0.3519, 0.4480] of 10 clips. Rounding both ends to clip edges gave
    # start 4 > end 3; it is clips 3..4 with the start 0.519 into clip 3 and the end 0.48 into clip 4.
    ps, pe = _probs(3, 4)
    spans, _ = decode_spans(ps, pe, torch.tensor([N]), offsets=_offsets(0.519, 0.48), min_clips=0)
    assert spans[0, 0].tolist() == pytest.approx([0.3519, 0.4480], abs=1e-6)
    pairs = candidate_pairs(spans[:, 0], torch.tensor([N]), N)
    assert pairs[0].nonzero().tolist() == [[3, 4]]
    assert pair_scores(spans[:, 0], ps, pe, torch.tensor([N])).tolist() == pytest.approx([0.25])
    assert_top_scoring(spans[:, 0], ps, pe, torch.tensor([N]), rtol=1e-6)
    # as the decoder returns it: shorter than a clip, so widened to one clip about its centre (0.39995)
    wide, _ = decode_spans(ps, pe, torch.tensor([N]), offsets=_offsets(0.519, 0.48))
    assert wide[0, 0].tolist() == pytest.approx([0.34995, 0.44995], abs=1e-6)
    assert candidate_pairs(wide[:, 0], torch.tensor([N]), N)[0].nonzero().tolist() == [[3, 3], [3, 4], [4, 4]]
    assert_top_scoring(wide[:, 0], ps, pe, torch.tensor([N]), rtol=1e-6)


def test_a_boundary_on_a_clip_edge_fits_both_clips_and_a_collapsed_end_reads_back() -> None:
    n_valid = torch.tensor([N])
    # offset 1.0 puts the start on the edge between clips 2 and 3: both are candidate start clips
    spans, _ = decode_spans(*_probs(2, 5), n_valid, offsets=_offsets(1.0, 0.5))
    assert candidate_pairs(spans[:, 0], n_valid, N)[0].nonzero().tolist() == [[2, 5], [3, 5]]
    # start == end with the start offset past the end offset: the end is clamped to the start (an empty span)
    ps, pe = _probs(6, 6)
    spans, _ = decode_spans(ps, pe, n_valid, offsets=_offsets(0.8, 0.2), min_clips=0)
    assert spans[0, 0, 0] == spans[0, 0, 1] == pytest.approx(0.68)
    assert [6, 6] in candidate_pairs(spans[:, 0], n_valid, N)[0].nonzero().tolist()
    assert_top_scoring(spans[:, 0], ps, pe, n_valid, rtol=1e-6)
    wide, _ = decode_spans(ps, pe, n_valid, offsets=_offsets(0.8, 0.2))  # the empty span widened to [0.63, 0.73]
    assert wide[0, 0].tolist() == pytest.approx([0.63, 0.73], abs=1e-6)
    assert [6, 6] in candidate_pairs(wide[:, 0], n_valid, N)[0].nonzero().tolist()
    assert_top_scoring(wide[:, 0], ps, pe, n_valid, rtol=1e-6)


def test_padding_clips_are_never_candidates_and_an_impossible_span_fails() -> None:
    ps, pe = _probs(1, 2)
    with pytest.raises(AssertionError, match="no clip pair decodes to, rows \\[0\\]"):
        pair_scores(torch.tensor([[0.5, 0.2]]), ps, pe, torch.tensor([N]))  # end before start
    short = torch.tensor([4])  # 4 valid clips of the 10: a span reaching clip 6 has no pair
    assert not candidate_pairs(torch.tensor([[0.25, 1.6]]), short, N).any()


def test_a_near_tie_passes_within_rtol_and_a_wrong_pick_fails() -> None:
    n_valid = torch.tensor([N])
    ps, pe = _probs(3, 4, runner_up=(7, 8), gap=0.005)  # pair (7, 8) scores 0.5 % below (3, 4)
    off = _offsets(0.25, 0.75)
    best, _ = decode_spans(ps, pe, n_valid, offsets=off)
    other = torch.tensor([[0.725, 0.875]])  # clips 7..8 with the same offsets
    assert_top_scoring(other, ps, pe, n_valid, rtol=1e-2)
    with pytest.raises(AssertionError, match="below the best"):
        assert_top_scoring(other, ps, pe, n_valid, rtol=1e-3)
    # same pair, boundaries 0.01 of a clip apart (device noise in the offsets): agree, no near-tie counted
    assert assert_spans_agree(best[:, 0] + 0.001, best[:, 0], ps, pe, n_valid, rtol=1e-3, clip_tol=0.05) == 0
    assert assert_spans_agree(other, best[:, 0], ps, pe, n_valid, rtol=1e-2, clip_tol=0.05) == 1
    far = torch.tensor([[0.05, 0.15]])  # clips 0..1: far below the best pair
    with pytest.raises(AssertionError, match="below the best"):
        assert_spans_agree(far, best[:, 0], ps, pe, n_valid, rtol=1e-1, clip_tol=0.05)
