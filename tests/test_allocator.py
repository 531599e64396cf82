from __future__ import annotations

import pytest

from samp_jax.allocator import (
    DEFAULT_RULE,
    RULES,
    Measured,
    NoFeasiblePlan,
    accuracy_decay_aware,
    accuracy_decay_aware_vs_fp16,
    accuracy_decay_aware_vs_reference,
    clearly_faster,
    fastest_above,
    most_accurate_under,
    pareto_front,
    rule_name,
    top_by_ratio,
)

# The SAMP paper's Table 2 (0, 2, ..., 12 quantized layers): accuracy, speedup.
TABLE2 = {
    "AFQMC Fully-Quant": ([0.7338, 0.6671, 0.3167, 0.3188, 0.6435, 0.6874, 0.4409],
                          [3.3741, 3.5790, 3.7689, 4.0486, 4.3882, 4.7751, 5.1817]),
    "AFQMC FFN-Only": ([0.7338, 0.7340, 0.7318, 0.7088, 0.6872, 0.5588, 0.5279],
                       [3.3741, 3.4799, 3.6162, 3.7725, 4.0059, 4.2262, 4.4574]),
    "IFLYTEK Fully-Quant": ([0.6056, 0.5572, 0.2957, 0.1454, 0.1493, 0.1149, 0.0150],
                            [1.4870, 1.5550, 1.6144, 1.7305, 1.8645, 2.0162, 2.1978]),
    "IFLYTEK FFN-Only": ([0.6056, 0.6007, 0.5932, 0.5840, 0.5786, 0.5663, 0.5641],
                         [1.4870, 1.5073, 1.5532, 1.6269, 1.7095, 1.7863, 1.8821]),
    "TNEWS Fully-Quant": ([0.5632, 0.0930, 0.0856, 0.0952, 0.0851, 0.0900, 0.0884],
                          [3.5022, 3.6790, 3.9083, 4.2274, 4.5985, 4.9869, 5.3271]),
    "TNEWS FFN-Only": ([0.5632, 0.5654, 0.5640, 0.5610, 0.5523, 0.5208, 0.5077],
                       [3.5022, 3.6659, 3.7465, 3.9527, 4.1440, 4.3917, 4.6195]),
}
# Picks the paper states in its text (index = quantized layers / 2); the others' underlines are lost.
PAPER_PICKS = {"AFQMC Fully-Quant": 5, "AFQMC FFN-Only": 4, "IFLYTEK FFN-Only": 6, "TNEWS FFN-Only": 3}


def _latencies(speedups):
    return [1 / s for s in speedups]


def test_as_printed_on_hand_made_tables():
    # monotone loss, linear speed: the first step has the best loss per gain, later ones worse
    assert accuracy_decay_aware([0.90, 0.899, 0.89, 0.80], [10, 9, 8, 7]) == 1
    # a plan that gains both is always taken ...
    assert accuracy_decay_aware([0.90, 0.91, 0.90, 0.85], [10, 9, 8, 7]) == 1
    # ... and then nothing that trades accuracy for speed qualifies (the printed rule's flaw)
    assert accuracy_decay_aware([0.90, 0.9001, 0.9000, 0.8999], [10, 9, 8, 7]) == 1
    # no faster plan is better than fp16 unless it gains: an increasing loss rate keeps improving dr
    assert accuracy_decay_aware([0.90, 0.85, 0.84], [10, 9, 8]) == 2
    assert accuracy_decay_aware([0.9], [1.0]) == 0


def test_as_printed_on_the_papers_table():
    got = {k: accuracy_decay_aware(a, _latencies(s)) for k, (a, s) in TABLE2.items()}
    # the note: AFQMC FFN-Only stops at 2 layers (paper 8), TNEWS FFN-Only at 2 (paper 6)
    assert got["AFQMC FFN-Only"] == 1 and got["TNEWS FFN-Only"] == 1
    assert got["AFQMC Fully-Quant"] == 5  # agrees with the paper
    assert sum(got[k] == v for k, v in PAPER_PICKS.items()) == 1


def test_fp16_reference_reading_reproduces_three_of_four_stated_picks():
    got = {k: accuracy_decay_aware_vs_fp16(a, _latencies(s)) for k, (a, s) in TABLE2.items()}
    assert {k: got[k] for k in PAPER_PICKS} == {**PAPER_PICKS, "AFQMC FFN-Only": 2}
    assert RULES[DEFAULT_RULE] is accuracy_decay_aware_vs_fp16
    # Non-monotonic accuracy: TNEWS Fully-Quant collapses at the first step and every quantized
    # plan loses ~0.47; the loss per latency gained is then smallest for the fastest plan, so the
    # rule walks to it. Without a target the rule trades any accuracy for speed: state a floor.
    a, s = TABLE2["TNEWS Fully-Quant"]
    assert accuracy_decay_aware_vs_fp16(a, _latencies(s)) == 6


def test_no_rule_judging_plans_alone_fits_all_four_picks():
    """AFQMC FFN-Only's pick (8 layers) is a worse trade than TNEWS FFN-Only's refused 8-layer plan."""
    a_afqmc, s_afqmc = TABLE2["AFQMC FFN-Only"]
    a_tnews, s_tnews = TABLE2["TNEWS FFN-Only"]
    loss_afqmc, gain_afqmc = a_afqmc[0] - a_afqmc[4], s_afqmc[4] / s_afqmc[0]
    loss_tnews, gain_tnews = a_tnews[0] - a_tnews[4], s_tnews[4] / s_tnews[0]
    assert loss_tnews < loss_afqmc / 4 and gain_tnews > gain_afqmc - 0.005


def test_slower_plans_are_never_recommended_by_the_fp16_reference_rule():
    # quantized plans slower than fp16 (the XLA path on an H100): stay at fp16
    assert accuracy_decay_aware_vs_fp16([0.84, 0.845, 0.838, 0.85], [1.04, 1.14, 1.37, 1.62]) == 0
    assert accuracy_decay_aware_vs_fp16([0.84, 0.845, 0.838], [1.04, 1.14, 0.9]) == 2
    # the printed rule has no such guard: a slower, more accurate plan has dr > 0 and qualifies
    assert accuracy_decay_aware([0.84, 0.845], [1.04, 1.14]) == 1


def test_faster_plans_losing_nothing_always_qualify():
    # measured on the fine-tuned MiniLM (CPU): 4/6 layers gains accuracy, 6/6 matches fp16 and is fastest
    acc = [0.8417, 0.8452, 0.8452, 0.8417, 0.8429, 0.8406, 0.8417]
    lat = [389.1, 372.5, 420.2, 379.1, 333.0, 323.8, 301.9]
    assert accuracy_decay_aware_vs_fp16(acc, lat) == 6
    assert accuracy_decay_aware(acc, lat) == 4  # the printed rule stops where dr_min went negative


def test_ties_keep_the_earlier_plan():
    # equal loss rates: the strict comparison keeps the first
    assert accuracy_decay_aware_vs_fp16([0.9, 0.89, 0.88], [10, 9, 8]) == 1
    plans = [Measured("a", 0.9, 2.0), Measured("b", 0.9, 1.0), Measured("c", 0.8, 1.0)]
    assert most_accurate_under(plans, 2.0).plan == "b"  # equal accuracy: the faster
    assert fastest_above(plans, 0.5).plan == "b"  # equal latency: the more accurate


def test_thresholds_and_infeasible_targets():
    plans = [Measured("fp16", 0.90, 10.0), Measured("ffn_int8:0-5", 0.89, 8.0), Measured("full_int8", 0.80, 6.0)]
    assert most_accurate_under(plans, 9.0).plan == "ffn_int8:0-5"
    assert fastest_above(plans, 0.85).plan == "ffn_int8:0-5"
    with pytest.raises(NoFeasiblePlan, match=r"no plan runs within 5 ms; the fastest: full_int8 \(6.000 ms") as e:
        most_accurate_under(plans, 5.0)
    assert [p.plan for p in e.value.closest][0] == "full_int8"
    with pytest.raises(NoFeasiblePlan, match=r"no plan reaches accuracy 0.95; the most accurate: fp16 \(0.9000"):
        fastest_above(plans, 0.95)


def test_top_by_ratio_and_pareto_front():
    base = Measured("fp16", 0.90, 10.0)
    plans = [base, Measured("a", 0.91, 9.5), Measured("b", 0.89, 8.0), Measured("c", 0.80, 5.0),
             Measured("d", 0.895, 9.0), Measured("slow", 0.95, 12.0)]
    top = top_by_ratio(plans, base, k=3)
    assert [p.plan for p in top] == ["a", "b", "d"]  # a loses nothing: infinite; then b 25 > d 22 > c 10
    assert [p.plan for p in pareto_front(plans)] == ["c", "b", "d", "a", "slow"]


def test_bad_tables():
    with pytest.raises(ValueError, match="need as many accuracies as latencies, got 2 and 3"):
        accuracy_decay_aware([0.1, 0.2], [1, 2, 3])
    with pytest.raises(ValueError, match="latency 1 is 0"):
        accuracy_decay_aware_vs_fp16([0.1, 0.2], [1, 0])


def test_the_reference_rule_keeps_its_former_name_as_an_alias():
    assert rule_name("vs_fp16") == rule_name("vs_reference") == DEFAULT_RULE == "vs_reference"
    assert accuracy_decay_aware_vs_fp16 is accuracy_decay_aware_vs_reference
    with pytest.raises(ValueError, match=r"unknown allocation rule 'best'; known: \['as_printed', 'vs_reference', 'vs_fp16'\]"):
        rule_name("best")


def test_latency_differences_inside_the_spreads_count_as_no_difference():
    ref = Measured("bf16", 0.90, 65, 64, 69)
    inside = Measured("q_in", 0.89, 60, 55, 66)  # median lower, IQR overlapping the reference's
    outside = Measured("q_out", 0.89, 55, 52, 63)  # IQR wholly below
    assert clearly_faster(outside, ref) and not clearly_faster(inside, ref) and not clearly_faster(ref, inside)
    assert clearly_faster(Measured("a", 0.9, 60), Measured("b", 0.9, 65))  # without spreads: the medians
    acc, lat = [0.90, 0.89], [65, 60]
    assert accuracy_decay_aware_vs_reference(acc, lat) == 1
    assert accuracy_decay_aware_vs_reference(acc, lat, [(64, 69), (55, 66)]) == 0
    assert accuracy_decay_aware_vs_reference(acc, lat, [(64, 69), (55, 63)]) == 1
    # as printed: a change inside the spreads is no latency change, skipped
    assert accuracy_decay_aware([0.90, 0.91], lat) == 1
    assert accuracy_decay_aware([0.90, 0.91], lat, [(64, 69), (55, 66)]) == 0
    assert [p.plan for p in top_by_ratio([ref, inside, outside], ref)] == ["q_out"]
    close = [Measured("fast", 0.80, 50, 45, 56), Measured("accurate", 0.85, 52, 49, 54),
             Measured("slow", 0.90, 70, 69, 71)]
    assert fastest_above(close, 0.5).plan == "accurate"  # 2 ms inside the spreads decide nothing
    assert fastest_above([Measured(p.plan, p.accuracy, p.latency_ms) for p in close], 0.5).plan == "fast"
    with pytest.raises(ValueError, match=r"spread 1 \(61, 66\) does not hold its median latency 60"):
        accuracy_decay_aware_vs_reference(acc, lat, [(64, 69), (61, 66)])
