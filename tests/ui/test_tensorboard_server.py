"""The real TensorBoard server shows a search's runs, curves and hyperparameters."""

from __future__ import annotations

import sys
import urllib.parse

import pytest
from _servers import alive, free_port, get_json, server

import nbopt


def objective(lr, layers):
    for epoch in range(3):
        nbopt.report(epoch, (lr - 0.01) ** 2 + layers + 1.0 / (epoch + 1))
    return (lr - 0.01) ** 2 + layers


@pytest.mark.slow
def test_tensorboard_serves_each_trial_its_curve_and_its_hyperparameters(tmp_path):
    logdir = tmp_path / "logs"
    result = nbopt.tune(
        objective,
        {"lr": nbopt.loguniform(1e-4, 1e-1), "layers": nbopt.choice(1, 2, 3)},
        max_evals=4,
        seed=0,
        study=tmp_path / "mlp.json",
        progress="none",
        logdir=logdir,
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        str(logdir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--reload_interval",
        "1",
    ]
    with server(command, f"{base}/data/logdir", tmp_path / "tensorboard.log") as pids:
        tags = get_json(f"{base}/data/plugin/scalars/tags")
        trial_runs = sorted(run for run in tags if run.startswith("mlp/trial-"))
        assert trial_runs == [f"mlp/trial-{n:04d}" for n in range(4)]
        assert {"value", "best_value"} <= set(tags["mlp"])

        query = urllib.parse.urlencode({"run": "mlp/trial-0002", "tag": "value"})
        points = get_json(f"{base}/data/plugin/scalars/scalars?{query}")
        steps_values = [(step, value) for _, step, value in points]
        trial = result.trials[2]
        expected = [*trial.intermediate, (3, trial.value)]
        assert [s for s, _ in steps_values] == [s for s, _ in expected]
        assert [v for _, v in steps_values] == pytest.approx([v for _, v in expected], rel=1e-6)

        experiment = get_json(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        assert {info["name"] for info in experiment["hparamInfos"]} == {"lr", "layers"}
        assert {info["name"]["tag"] for info in experiment["metricInfos"]} >= {"value"}
        groups = get_json(
            f"{base}/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": ["STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_UNKNOWN"],
                "colParams": [],
                "startIndex": 0,
                "sliceSize": 100,
            },
        )["sessionGroups"]
        by_session = {group["sessions"][0]["name"]: group for group in groups}
        assert set(by_session) == set(trial_runs)
        for trial in result.trials:
            group = by_session[f"mlp/trial-{trial.number:04d}"]
            assert group["hparams"]["lr"] == pytest.approx(trial.params["lr"])
            assert group["hparams"]["layers"] == trial.params["layers"]
            assert group["sessions"][0]["status"] == "STATUS_SUCCESS"
            (metric,) = [m for m in group["metricValues"] if m["name"]["tag"] == "value"]
            assert metric["value"] == pytest.approx(trial.value, rel=1e-6)
    assert not any(alive(pid) for pid in pids)
