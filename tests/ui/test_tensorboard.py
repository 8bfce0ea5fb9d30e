"""TensorBoard logs of a search, read back with TensorBoard's own reader."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

import nbopt
from nbopt import choice, uniform

HPARAMS = "hparams"


def _load(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return accumulator


def _scalars(accumulator: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def _hparams(accumulator: EventAccumulator) -> dict[str, object]:
    content = accumulator.PluginTagToContent(HPARAMS)[metadata.SESSION_START_INFO_TAG]
    start = metadata.parse_session_start_info_plugin_data(content)
    decoded = {}
    for name, value in start.hparams.items():
        kind = value.WhichOneof("kind")
        decoded[name] = getattr(value, kind)
    return decoded


def _end_status(accumulator: EventAccumulator) -> int:
    content = accumulator.PluginTagToContent(HPARAMS)[metadata.SESSION_END_INFO_TAG]
    return metadata.parse_session_end_info_plugin_data(content).status


def _run(tmp_path: Path, objective, space, **options):
    options.setdefault("study", tmp_path / "mlp.json")
    return nbopt.tune(objective, space, progress="none", logdir=tmp_path / "tb", **options)


def test_one_run_per_trial_plus_the_root_run(tmp_path: Path) -> None:
    """The search's run is named after the study and holds a trial-NNNN run per trial."""
    result = _run(tmp_path, lambda x: x, {"x": uniform(0, 1)}, max_evals=4)
    root = tmp_path / "tb" / "mlp"
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["mlp"]
    trial_dirs = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert trial_dirs == [f"trial-{n:04d}" for n in range(len(result.trials))]
    assert list(root.glob("events.out.tfevents.*"))


def test_root_run_has_value_and_best_so_far_per_successful_trial(tmp_path: Path) -> None:
    """The root run has "<metric>" and "best_<metric>", one point per successful trial."""
    outcomes = iter([3.0, "fail", 1.0, 2.0, 0.5])

    def objective(x):
        value = next(outcomes)
        if value == "fail":
            raise RuntimeError("no")
        return {"loss": value}

    _run(tmp_path, objective, {"x": uniform(0, 1)}, max_evals=5, metric="loss")
    root = _load(tmp_path / "tb" / "mlp")
    assert set(root.Tags()["scalars"]) == {"loss", "best_loss"}
    assert _scalars(root, "loss") == [(0, 3.0), (2, 1.0), (3, 2.0), (4, 0.5)]
    assert _scalars(root, "best_loss") == [(0, 3.0), (2, 1.0), (3, 1.0), (4, 0.5)]


def test_best_so_far_follows_mode_max(tmp_path: Path) -> None:
    """With mode=max the best-so-far curve is the running maximum."""
    outcomes = iter([0.2, 0.9, 0.5])
    _run(
        tmp_path,
        lambda x: {"acc": next(outcomes)},
        {"x": uniform(0, 1)},
        max_evals=3,
        metric="acc",
        mode="max",
    )
    root = _load(tmp_path / "tb" / "mlp")
    assert [v for _, v in _scalars(root, "best_acc")] == pytest.approx([0.2, 0.9, 0.9])


def test_each_trial_run_has_its_metric_and_hparams(tmp_path: Path) -> None:
    """Each trial run holds the metric and HParams start/end records with its parameters."""
    space = {
        "lr": uniform(1e-3, 1e-1),
        "layers": choice(1, 2, 3),
        "act": choice("relu", "tanh"),
        "bn": choice(True, False),
        "opt": {"name": "sgd", "momentum": uniform(0.5, 0.9)},
    }
    result = _run(
        tmp_path, lambda lr, layers, act, bn, opt: lr * layers, space, max_evals=3, seed=0
    )
    for trial in result.trials:
        run = _load(tmp_path / "tb" / "mlp" / f"trial-{trial.number:04d}")
        assert "value" in run.Tags()["scalars"]
        assert [v for _, v in _scalars(run, "value")] == pytest.approx([trial.value])
        tags = set(run.PluginTagToContent(HPARAMS))
        assert {metadata.SESSION_START_INFO_TAG, metadata.SESSION_END_INFO_TAG} <= tags
        hparams = _hparams(run)
        params = trial.params
        assert hparams == {
            "lr": pytest.approx(params["lr"]),
            "layers": params["layers"],
            "act": params["act"],
            "bn": params["bn"],
            "opt.name": "sgd",
            "opt.momentum": pytest.approx(params["opt"]["momentum"]),
        }
        assert _end_status(run) == api_pb2.STATUS_SUCCESS


def test_failed_trial_has_hparams_with_failure_status(tmp_path: Path) -> None:
    """A failed trial still gets its HParams, ended with STATUS_FAILURE and no value."""

    def objective(x):
        raise ValueError("broken")

    with pytest.raises(nbopt.TuneError):
        _run(tmp_path, objective, {"x": uniform(0, 1)}, max_evals=1)
    run = _load(tmp_path / "tb" / "mlp" / "trial-0000")
    assert "x" in _hparams(run)
    assert _end_status(run) == api_pb2.STATUS_FAILURE
    assert run.Tags()["scalars"] == []


def test_reported_steps_are_the_trial_curve(tmp_path: Path) -> None:
    """``nbopt.report(step, value, **metrics)`` becomes the trial's curves, final value last."""

    def objective(x):
        for epoch in range(4):
            nbopt.report(epoch, x / (epoch + 1), acc=0.2 * epoch)
        return x / 10

    result = _run(tmp_path, objective, {"x": uniform(1, 2)}, max_evals=2, seed=0)
    for trial in result.trials:
        x = trial.params["x"]
        run = _load(tmp_path / "tb" / "mlp" / f"trial-{trial.number:04d}")
        curve = _scalars(run, "value")
        assert [step for step, _ in curve] == [0, 1, 2, 3, 4]
        expected = [x, x / 2, x / 3, x / 4, x / 10]
        assert [v for _, v in curve] == pytest.approx(expected, rel=1e-6)
        assert [v for _, v in _scalars(run, "acc")] == pytest.approx([0.0, 0.2, 0.4, 0.6])


def _trial_values(run_dir: Path) -> list[tuple[int, float]]:
    return _scalars(_load(run_dir / "trial-0000"), "value")


def test_searches_in_quick_succession_get_their_own_runs(tmp_path: Path) -> None:
    """Two searches logging to the same directory never share a run (nor a trial's run)."""
    logdir = tmp_path / "tb"
    for _ in range(2):
        nbopt.tune(lambda x: x, {"x": uniform(0, 1)}, max_evals=2, progress="none", logdir=logdir)
    runs = sorted(logdir.iterdir())
    assert len(runs) == 2
    for run in runs:
        assert len(_trial_values(run)) == 1


def test_restarted_study_does_not_mix_old_and_new_trials(tmp_path: Path) -> None:
    """After restart=True, TensorBoard shows the new trials only, one value per trial."""
    first = _run(tmp_path, lambda x: x, {"x": uniform(0, 1)}, max_evals=2, seed=0)
    second = _run(tmp_path, lambda x: x, {"x": uniform(0, 1)}, max_evals=2, seed=1, restart=True)
    assert first.trials[0].value != second.trials[0].value
    newest = max((tmp_path / "tb").iterdir(), key=lambda run: run.stat().st_mtime_ns)
    assert [v for _, v in _trial_values(newest)] == pytest.approx([second.trials[0].value])
    root = _load(newest)
    assert [v for _, v in _scalars(root, "value")] == pytest.approx(
        [t.value for t in second.trials]
    )


def test_resumed_study_continues_in_the_same_run(tmp_path: Path) -> None:
    """Resuming a study logs its new trials next to the old ones, in the same run."""
    _run(tmp_path, lambda x: x, {"x": uniform(0, 1)}, max_evals=2, seed=0)
    _run(tmp_path, lambda x: x, {"x": uniform(0, 1)}, max_evals=4, seed=0)
    root = tmp_path / "tb" / "mlp"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
        f"trial-{n:04d}" for n in range(4)
    ]
    assert [step for step, _ in _scalars(_load(root), "value")] == [0, 1, 2, 3]


def test_logdir_none_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    """logdir=None turns TensorBoard logging off entirely."""
    monkeypatch.chdir(tmp_path)
    nbopt.tune(lambda x: x, {"x": uniform(0, 1)}, max_evals=2, progress="none", logdir=None)
    assert list(tmp_path.iterdir()) == []


def test_default_logdir_and_run_name(tmp_path: Path, monkeypatch) -> None:
    """By default logs go to runs/nbopt/tune-<timestamp>/ in the working directory."""
    monkeypatch.chdir(tmp_path)
    nbopt.tune(lambda x: x, {"x": uniform(0, 1)}, max_evals=2, progress="none")
    runs = list((tmp_path / "runs" / "nbopt").iterdir())
    assert len(runs) == 1
    assert runs[0].name.startswith("tune-")
    assert len([p for p in runs[0].iterdir() if p.is_dir()]) == 2


def test_several_objectives_log_every_metric_and_the_front(tmp_path: Path) -> None:
    """The root run holds each metric and the size of the front per trial; each trial run
    holds each metric, beside its HParams."""
    outcomes = iter([(0.5, 3.0), (0.7, 4.0), (0.4, 5.0), "fail", (0.9, 2.0)])

    def objective(x):
        outcome = next(outcomes)
        if outcome == "fail":
            raise RuntimeError("no")
        return {"acc": outcome[0], "latency": outcome[1], "other": 1.0}

    result = _run(
        tmp_path,
        objective,
        {"x": uniform(0, 1)},
        max_evals=5,
        metric=["acc", "latency"],
        mode=["max", "min"],
    )
    root = _load(tmp_path / "tb" / "mlp")
    assert set(root.Tags()["scalars"]) == {"acc", "latency", "front_size"}
    assert [step for step, _ in _scalars(root, "acc")] == [0, 1, 2, 4]
    assert [v for _, v in _scalars(root, "acc")] == pytest.approx([0.5, 0.7, 0.4, 0.9])
    assert [v for _, v in _scalars(root, "latency")] == pytest.approx([3.0, 4.0, 5.0, 2.0])
    # Fronts: {0}, {0, 1}, {0, 1} (2 is dominated by 0), then 4 dominates both.
    assert [v for _, v in _scalars(root, "front_size")] == [1, 2, 2, 1]
    assert [t.number for t in result.front] == [4]
    for trial in result.trials:
        run = _load(tmp_path / "tb" / "mlp" / f"trial-{trial.number:04d}")
        if trial.usable:
            assert set(run.Tags()["scalars"]) == {"acc", "latency"}
            assert [v for _, v in _scalars(run, "latency")] == [trial.metrics["latency"]]
            assert [v for _, v in _scalars(run, "acc")] == pytest.approx([trial.value])
        assert metadata.SESSION_END_INFO_TAG in set(run.PluginTagToContent(HPARAMS))
