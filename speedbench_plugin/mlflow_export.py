"""Export each run to an MLflow tracking server the user already runs (off by default).

``--speedbench-mlflow URI`` (a tracking URI: ``http://host:5000``, ``sqlite:///mlflow.db``, a file
store path) logs one MLflow run per session, at its end, from the final records: the session's
setup as parameters, every case's figures as metrics (``<case>/AL``, ``<case>/output_tps``,
``<case>/cpu_s_per_output_token``...) and the results document as an artifact. Needs the
``mlflow`` extra (``pip install -e '.[mlflow]'``: mlflow-skinny). A failed export is reported and
fails the session's exit status; the results files are already written by then.
"""
from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from speedbench_plugin import options as o
from speedbench_plugin.record import Record
from speedbench_plugin.reports import results_document

MLFLOW = o.Option("speedbench-mlflow", "MLflow tracking URI to log this run to at its end (default: no export)",
                  preset_key="mlflow")
MLFLOW_EXPERIMENT = o.Option("speedbench-mlflow-experiment", "MLflow experiment name", "speedbench",
                             preset_key="mlflow_experiment")
OPTIONS = (MLFLOW, MLFLOW_EXPERIMENT)


def _key(text: str) -> str:
    """MLflow keys allow letters, digits, ``_ - . /`` and spaces."""
    return re.sub(r"[^\w\-./ ]", "_", text)


def case_metrics(record: Record) -> dict[str, float]:
    """A case's figures as MLflow metrics, read from its record (undefined figures are left out)."""
    cost = record.section("cost") or {}
    figures: dict[str, Any] = {
        "AL": record.acceptance.acceptance_length, "AR": record.acceptance.acceptance_rate,
        "output_tps": record.speed.output_tps, "user_tps_median": record.speed.user_tps_median,
        "ttft_median_s": record.speed.ttft_median_s,
        "speedup_vs_none": (record.section("speedup_vs_none") or {}).get("output_tps"),
        **{k: v for k, v in cost.items() if k.endswith(("_per_output_token", "_per_accepted_token"))},
        **{f"{k}_vs_none": v for k, v in (record.section("cost_vs_none") or {}).items() if k != "baseline_case_id"},
    }
    prefix = _key(record.case_id)
    return {f"{prefix}/{name}": float(value) for name, value in figures.items() if isinstance(value, (int, float))}


def session_params(records: Sequence[Record]) -> dict[str, str]:
    cases = [r.case for r in records]
    return {
        "engines": ", ".join(sorted({f"{c.engine} {c.engine_version}" for c in cases})),
        "models": ", ".join(sorted({f"{c.model} ({c.model_sha[:12]})" for c in cases})),
        "drafters": ", ".join(sorted({str(c.drafter) for c in cases})),
        "max_tokens": ", ".join(sorted({str(c.max_tokens) for c in cases})),
        "rounds": ", ".join(sorted({str(c.rounds) for c in cases})),
        "cases": str(len(cases)),
    }


def export(records: Sequence[Record], uri: str, experiment: str, run_name: str | None = None) -> str:
    """Log one MLflow run; its id."""
    try:
        import mlflow
    except ImportError:
        raise RuntimeError("--speedbench-mlflow needs MLflow: pip install -e '.[mlflow]' (mlflow-skinny)") from None
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run = client.create_run(experiment_id, run_name=run_name, tags={"speedbench.record_schema": str(records[0].schema)})
    run_id: str = run.info.run_id
    try:
        for name, value in session_params(records).items():
            client.log_param(run_id, name, value[:6000])
        metrics = {k: v for r in records for k, v in case_metrics(r).items()}
        entities = [mlflow.entities.Metric(k, v, 0, 0) for k, v in metrics.items()]
        for start in range(0, len(entities), 1000):  # MLflow's batch limit
            client.log_batch(run_id, metrics=entities[start:start + 1000])
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "speedbench-results.json"
            path.write_text(json.dumps(results_document(records)), encoding="utf-8")
            client.log_artifact(run_id, str(path))
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def pytest_speedbench_records(config: pytest.Config, records: Sequence[Record]) -> None:
    uri = o.value(config, MLFLOW)
    if not uri or not records:
        return
    try:
        run_id = export(records, uri, o.value(config, MLFLOW_EXPERIMENT) or "speedbench")
    except Exception as exc:
        raise RuntimeError(f"--speedbench-mlflow {uri}: the export failed: {type(exc).__name__}: {exc}") from exc
    config.get_terminal_writer().line(f"speedbench: logged to MLflow {uri}, run {run_id}")
