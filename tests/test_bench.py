"""python -m sard.bench --quick runs end to end and its figures hang together."""
import json
from pathlib import Path

from conftest import requires_data, run_module, tiny_checkpoint


@requires_data
def test_bench_quick(tmp_path):
    ck = tiny_checkpoint(tmp_path / "ck")
    r = run_module("sard.bench", "--quick", "--checkpoint", ck, "--json", tmp_path / "b.json", "--out", tmp_path / "b.md")
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "b.json").read_text())
    assert set(rep["methods_s_per_pair"]) == {"sard", "cutpaste", "draem", "glass"}
    assert all(v > 0 for v in rep["methods_s_per_pair"].values())
    assert [row["size"] for row in rep["roi_curve"]] == [128, 256]
    assert rep["roi_curve"][-1]["full_s"] > rep["roi_curve"][-1]["roi_s"]   # ROI pays off on the larger image
    assert 0 < rep["network_share"] <= 1
    b = rep["batched_export"]   # side by side in this run: a ratio, never a time limit
    assert b["size"] == 256 and b["batch"] == 8 and b["unbatched_pairs_per_s"] > 0 and b["batched_pairs_per_s"] > 0
    assert rep["training"]["train_s_per_step_128"] > rep["training"]["train_s_per_step_64"]
    for m in rep["peak_memory"] if Path("/proc/self/clear_refs").exists() else []:   # Linux: peak of the synthesis alone
        assert "error" not in m, m
        assert m["peak_mib"] >= m["before_synthesis_mib"] > 100     # torch and the model are resident
        assert m["synthesis_mib"] > 0                               # synthesis allocates: output, activations
    assert "Seconds per synthesized pair" in (tmp_path / "b.md").read_text()
    assert "## Batched export" in (tmp_path / "b.md").read_text()
