"""The sharding recipes kept in the repository, checked against their schemas (no cluster, no
network): the GitHub Actions gate workflow against the workflow schema check-jsonschema ships,
the Kubernetes manifests against the Kubernetes API models of the official ``kubernetes`` client."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "speedbench-gate.yml"
KUBE = ROOT / "deploy" / "kubernetes"


def test_gate_workflow_passes_the_workflow_schema() -> None:
    tool = Path(sys.executable).parent / "check-jsonschema"
    if not tool.exists():
        pytest.skip("check-jsonschema is not installed (pip install -e '.[dev]')")
    result = subprocess.run([str(tool), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gate_workflow_shards_then_merges() -> None:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    shard, merge = jobs["shard"], jobs["merge"]
    assert "fromJSON(vars.SPEEDBENCH_SHARDS" in shard["strategy"]["matrix"]["shard"]
    assert shard["strategy"]["fail-fast"] is False
    run = next(step for step in shard["steps"] if step.get("name") == "Run this shard of the suite")
    assert run["env"]["SHARD"] == "${{ matrix.shard }}/${{ strategy.job-total }}"
    assert '--speedbench-shard "$SHARD"' in run["run"]
    assert "--speedbench-compare" not in run["run"]  # judged once, over every shard, in the merge job
    assert merge["needs"] == "shard" and merge["if"] == "always()"
    download = next(step for step in merge["steps"] if step.get("uses", "").startswith("actions/download-artifact"))
    assert download["with"]["pattern"] == "speedbench-shard-*"
    merged = next(step for step in merge["steps"] if step.get("name") == "Merge the shards and judge")
    assert "speedbench_plugin merge results/shard-* --out results/merged" in merged["run"]
    assert 'exit "${PIPESTATUS[0]}"' in merged["run"]  # the gate's exit code fails the job


def _deserialize(document: dict[str, Any]) -> Any:
    """The document as the API's model; a field the API does not know is dropped by the client, so
    comparing the round trip with the input catches misspelled and misplaced fields too."""
    kubernetes = pytest.importorskip("kubernetes", reason="the kubernetes client is not installed (pip install -e '.[dev]')")
    client = kubernetes.client.ApiClient()

    kind = {"Job": "V1Job", "PersistentVolumeClaim": "V1PersistentVolumeClaim"}[document["kind"]]
    model = client.deserialize(json.dumps(document), kind, "application/json")
    assert client.sanitize_for_serialization(model) == document
    return model


def test_indexed_job_and_merge_pass_the_kubernetes_api_models() -> None:
    shards = list(yaml.safe_load_all((KUBE / "speedbench-shards.yaml").read_text()))
    merge = yaml.safe_load((KUBE / "speedbench-merge.yaml").read_text())
    models = [_deserialize(doc) for doc in [*shards, merge]]
    job = next(m for m in models if m.metadata.name == "speedbench-shards")
    assert job.spec.completion_mode == "Indexed"
    assert job.spec.completions == job.spec.parallelism
    container = job.spec.template.spec.containers[0]
    script = container.args[0]
    assert "shard=$((JOB_COMPLETION_INDEX + 1))" in script
    assert '--speedbench-shard "$shard/$SHARDS"' in script and '--speedbench-run-dir "/results/shard-$shard"' in script
    env = {e.name: e.value for e in container.env}
    assert int(env["SHARDS"]) == job.spec.completions
    merge_job = next(m for m in models if m.metadata.name == "speedbench-merge")
    assert re.search(r"speedbench_plugin merge /results/shard-\* --out /results/merged", merge_job.spec.template.spec.containers[0].args[0])
    claims = {v.persistent_volume_claim.claim_name for m in (job, merge_job) for v in m.spec.template.spec.volumes
              if v.persistent_volume_claim}
    assert claims == {next(m for m in models if m.kind == "PersistentVolumeClaim").metadata.name}


def test_a_misspelled_field_fails_the_kubernetes_check() -> None:
    job = yaml.safe_load((KUBE / "speedbench-merge.yaml").read_text())
    job["spec"]["completionMod"] = "Indexed"
    with pytest.raises(AssertionError):
        _deserialize(job)
