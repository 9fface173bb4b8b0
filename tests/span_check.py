"""Checks that predicted spans agree with a reference decoding, for tests that compare devices (CPU vs CUDA).

The span head decodes the clip pair (start clip s <= end clip e) with the highest ``p_start[s] * p_end[e]``, then
moves each boundary inside its clip by the regressed offsets (:func:`tvgkit.grounding.model.decode_spans`): the
normalised span is ``[(s + o_s) / n, max(e + o_e, s + o_s) / n]`` with ``o_s, o_e`` in [0, 1]. So a span is not a
whole number of clips, and its clip pair is read back as the clips its boundaries lie in (a boundary that lies on a
clip edge may come from either neighbour: both are candidates). A span shorter than one clip is then widened to one
clip about its centre (:func:`tvgkit.grounding.model.widen`), inside [0, n]: the span it came from lies within it, so
a span exactly one clip wide may come from any pair of clips it overlaps (start <= end).

Two devices agree on a query when they decode the same clip pair with boundaries within ``clip_tol`` of a clip, or,
at a near-tie, when the pair the other device picked scores within ``rtol`` of the reference's best pair. Used by
tests/test_cuda.py and checked on hand-made cases on CPU by tests/test_span_check.py.
"""

from __future__ import annotations

import torch

from tvgkit.grounding.model import decode_spans

EDGE_TOL = 1e-4  # in clips: float32 rounding of (s + o) / n * n; a boundary this close to an edge fits both clips


def candidate_pairs(spans: torch.Tensor, n_valid: torch.Tensor, width: int) -> torch.Tensor:
    """Bool [N, width, width]: the (start clip, end clip) pairs, start <= end < n_valid, that decode to ``spans``."""
    n = n_valid.double()[:, None]
    lo, hi = spans[:, :1].double() * n, spans[:, 1:].double() * n
    clip = torch.arange(width, dtype=torch.float64)[None]
    widened = (hi - lo - torch.clamp(n, max=1.0)).abs() <= EDGE_TOL  # possibly grown from a shorter span
    inside = (clip - EDGE_TOL <= hi) & (lo <= clip + 1 + EDGE_TOL)  # clips the span overlaps
    starts = ((clip - EDGE_TOL <= lo) & (lo <= clip + 1 + EDGE_TOL)) | (widened & inside)
    ends = (((clip - EDGE_TOL <= hi) & (hi <= clip + 1 + EDGE_TOL)) | (widened & inside)) & (clip < n)
    upper = torch.ones(width, width, dtype=torch.bool).triu()[None]
    return starts[:, :, None] & ends[:, None, :] & upper


def pair_scores(spans: torch.Tensor, ps: torch.Tensor, pe: torch.Tensor, n_valid: torch.Tensor) -> torch.Tensor:
    """The score ``p_start * p_end`` of the clip pair each span decodes from (the best one at a clip edge) [N].

    A span that no clip pair can produce fails the assertion, naming its rows.
    """
    pairs = candidate_pairs(spans, n_valid, ps.shape[1])
    missing = (~pairs.flatten(1).any(1)).nonzero().flatten().tolist()
    assert not missing, f"spans no clip pair decodes to, rows {missing}: {spans[missing].tolist()}"
    joint = ps.double()[:, :, None] * pe.double()[:, None, :]
    return joint.masked_fill(~pairs, -1.0).flatten(1).max(1).values


def assert_top_scoring(spans: torch.Tensor, ps: torch.Tensor, pe: torch.Tensor, n_valid: torch.Tensor, rtol: float):
    """Each span [N, 2] decodes from a clip pair that scores within ``rtol`` of the best pair under ``ps``/``pe``."""
    _, best = decode_spans(ps, pe, n_valid)
    score, top = pair_scores(spans, ps, pe, n_valid), best[:, 0].double()
    low = (score < top * (1 - rtol) - 1e-12).nonzero().flatten().tolist()
    assert not low, f"rows {low} score {score[low].tolist()}, below the best {top[low].tolist()} by more than {rtol}"


def assert_spans_agree(
    spans: torch.Tensor,
    reference: torch.Tensor,
    ps: torch.Tensor,
    pe: torch.Tensor,
    n_valid: torch.Tensor,
    rtol: float,
    clip_tol: float,
) -> int:
    """``spans`` agree with ``reference`` (both [N, 2], decoded from ``ps``/``pe`` and offsets on two devices):
    boundaries within ``clip_tol`` of a clip, or, where they differ (a near-tie), a pair scoring within ``rtol`` of
    the best. Returns how many queries were near-ties."""
    assert spans.shape == reference.shape, (spans.shape, reference.shape)
    gap = ((spans.double() - reference.double()).abs() * n_valid.double()[:, None]).amax(1)
    ties = gap > clip_tol
    assert_top_scoring(reference, ps, pe, n_valid, rtol=1e-5)  # the reference is itself the best decoding
    if ties.any():
        assert_top_scoring(spans[ties], ps[ties], pe[ties], n_valid[ties], rtol)
    return int(ties.sum())
