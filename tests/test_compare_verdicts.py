"""A case's verdict from its metrics: a drafter that drafts less often (higher AR, lower AL) is not
"improved", and a failing case always shows its AL (seen in `make gate-demo`: the weaker n-gram
drafter, min=5, was reported IMPROVED on coding with AR 0.26 -> 0.89 while its AL fell 1.41 -> 1.28)."""
from __future__ import annotations

from speedbench_plugin.compare import judge
from speedbench_plugin.compare.plugin import failure_message


def _metric(name: str, status: str, base: float, cur: float, kind: str = "acceptance") -> judge.MetricResult:
    return judge.MetricResult(name, kind, status, base, cur, cur - base, (cur - base - 0.01, cur - base + 0.01),
                              0.02, 0.5, 0.5, p_adj=0.001, n=9)


def test_a_higher_ar_alone_is_not_an_improvement() -> None:
    metrics = [_metric("AL", judge.UNCHANGED, 1.41, 1.28), _metric("AR", judge.IMPROVED, 0.26, 0.89)]
    assert judge.case_status(metrics) == judge.UNCHANGED


def test_al_or_speed_gains_are_improvements() -> None:
    assert judge.case_status([_metric("AL", judge.IMPROVED, 1.2, 1.5), _metric("AR", judge.UNCHANGED, 0.3, 0.3)]) \
        == judge.IMPROVED
    speed = _metric("output TPS", judge.IMPROVED, 10.0, 14.0, kind="speed")
    assert judge.case_status([_metric("AL", judge.IDENTICAL, 1.2, 1.2), speed]) == judge.IMPROVED


def test_any_significant_drop_still_regresses() -> None:
    metrics = [_metric("AL", judge.UNCHANGED, 1.32, 1.13), _metric("AR", judge.IMPROVED, 0.25, 0.69),
               _metric("pp[0]", judge.REGRESSED, 0.15, 0.05)]
    assert judge.case_status(metrics) == judge.REGRESSED


def test_the_failure_names_al_whatever_it_did() -> None:
    comparison = judge.CaseComparison(
        "test_q[vllm-ngram_k3_max5_min5-qa]", "test_q[vllm-ngram_k3-qa]", "base.json", judge.REGRESSED,
        metrics=[_metric("AL", judge.UNCHANGED, 1.32, 1.13), _metric("AR", judge.IMPROVED, 0.25, 0.69),
                 _metric("pp[0]", judge.REGRESSED, 0.15, 0.05)],
    ).to_dict()
    lines = failure_message(comparison).splitlines()
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["UNCHANGED AL 1.320 -> 1.130", "IMPROVED AR 0.250 -> 0.690",
                                                                  "REGRESSED pp[0] 0.150 -> 0.050"]


def test_the_note_goes_only_where_a_side_gain_was_set_aside() -> None:
    side = [_metric("AL", judge.UNCHANGED, 1.41, 1.28), _metric("AR", judge.IMPROVED, 0.26, 0.89)]
    assert judge.side_gains_only(judge.case_status(side), side)
    regressed = [*side, _metric("pp[0]", judge.REGRESSED, 0.15, 0.05)]
    assert not judge.side_gains_only(judge.case_status(regressed), regressed)
    plain = [_metric("AL", judge.UNCHANGED, 1.41, 1.40)]
    assert not judge.side_gains_only(judge.case_status(plain), plain)
