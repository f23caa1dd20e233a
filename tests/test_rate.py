"""Rate: segment qualities from the policy, and the one owner of their offset."""

from fractions import Fraction

import pytest

from vidsieve.rate import FeedbackController, LagGuard, RateController, RateModel, RatePolicy, SegmentPlan, solve_offset


def test_policy_presets_and_class_weights():
    p = RateController(RatePolicy("evidence"))
    assert p.segment_quality(True, {"person"}) > p.segment_quality(True, {"car"}) > p.segment_quality(False)
    assert RatePolicy("archive").base(True) < RatePolicy("balanced").base(True)
    q = RatePolicy("balanced", class_weights={"car": 2.0})
    assert q.base(True, {"car"}) > q.base(True, {"person"})
    assert RateController(RatePolicy("balanced", quality=7)).segment_quality(True) == 7
    with pytest.raises(ValueError):
        RatePolicy("nope")


def test_solve_offset_meets_the_target():
    model = RateModel([1, 4, 8], [0.05, 0.2, 1.0])
    plans = [SegmentPlan(kept=10, pixels=1000, base=4.5, frames=40), SegmentPlan(kept=2, pixels=1000, base=2.0, frames=40)]
    for target in (2000.0, 5000.0):
        off = solve_offset(plans, model, target)
        got = sum(p.kept * p.pixels * model.bpp(min(8, max(1, p.base + off))) for p in plans)
        assert got == pytest.approx(target, rel=1e-3)


def test_lag_guard_levels():
    g = LagGuard(soft=1.0, hard=4.0)
    assert not g.update(0.5) and g.level == 0
    assert g.update(1.5) and g.level == 1
    g.update(1.5), g.update(1.5), g.update(1.5)
    assert g.level == LagGuard.FEWER_ANALYSES  # soft lag never goes past level 3
    assert g.update(5.0) and g.level == LagGuard.SKIPPING
    for want in (3, 2, 1, 0):
        assert g.update(0.1) and g.level == want


def test_target_offset_survives_a_degradation_and_back():
    """The lag guard's lower quality comes on top of what meeting the target needs, and goes away
    without undoing it (it used to overwrite the target's offset with its own)."""
    rc = RateController(RatePolicy(), target_kbps=100, time_base=Fraction(1, 10))
    rc.start(0)
    rc.on_coded(400_000)  # twice the 200 000 bits the first 2 s allow
    rc.segment_closed(20, 1)
    target = rc.target_offset
    assert target < 0
    q_target = rc.segment_quality(True)
    rc.degrade(LagGuard.LOWER_QUALITY)
    assert rc.offset == pytest.approx(target + RateController.DEGRADED_OFFSET)
    assert rc.segment_quality(True) < q_target
    rc.on_coded(50_000)
    rc.segment_closed(40, 2)  # feedback while degraded still steers the target part
    moved = rc.target_offset
    assert moved != target
    rc.degrade(0)
    assert rc.offset == pytest.approx(moved) and rc.degrade_offset == 0


def test_feedback_is_bounded():
    fb = FeedbackController()
    assert fb.correction(1e9, 1.0) == -fb.max_step and fb.correction(1.0, 1e9) == fb.max_step
    assert fb.correction(0, 100) == 0.0
