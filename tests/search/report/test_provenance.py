"""The report says where a search's trials came from and what it never trained: the configurations
over its budget (a grid's from experiment.json, a sampler's from its study) and the earlier searches
whose trials seeded its study, in the header and in their own section. A whole report with both:
test_report.py's test_optuna_importances_and_where_the_trials_came_from."""

from __future__ import annotations

from search.report import provenance

WHY = "params 46.77M > 10M"


def test_a_grid_reports_its_configurations_over_budget_from_experiment_json(tmp_path):
    over = [{"config": {"preset": "simvpv2-l", "lambda_ddr": 0.1}, "reason": WHY},
            {"config": {"preset": "simvpv2-l", "lambda_ddr": 0.0}, "reason": WHY}]
    exp = {"algorithm": "grid", "budget": {"params_m": 10.0}, "over_budget": over, "warm_start": []}
    skipped = provenance.skipped(exp, tmp_path)  # a grid has no study to read
    assert provenance.facts(exp, skipped) == [
        ["budget", "params <= 10M: 2 configuration(s) over it skipped, never trained"]]
    assert provenance.section(exp, skipped).endswith(
        f"- preset=simvpv2-l lambda_ddr=0.1: {WHY}\n- preset=simvpv2-l lambda_ddr=0.0: {WHY}")


def test_a_long_list_of_ignored_warm_start_trials_is_cut_in_the_report(tmp_path):
    ignored = [{"trial_id": f"t{i}", "why": "lr=0.5 is outside this space"} for i in range(25)]
    exp = {"algorithm": "optuna", "warm_start": [{"run": "a", "path": "runs/a", "seeded": 0,
                                                  "ignored": ignored, "not_completed": 0}]}
    lines = provenance.section(exp, []).splitlines()
    assert lines[-1] == "- ... and 5 more (experiment.json lists them all)"
    assert sum(line.startswith("- t") for line in lines) == provenance.LISTED == 20


def test_a_search_without_budget_or_warm_start_says_neither(tmp_path):
    for exp in ({"algorithm": "grid"}, {"algorithm": "optuna", "budget": {}, "over_budget": [], "warm_start": []}):
        assert provenance.skipped(exp, tmp_path) == [] and provenance.facts(exp, []) == []
        assert provenance.section(exp, []) is None
