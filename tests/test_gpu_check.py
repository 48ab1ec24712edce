"""tools/gpu_check.py where there is no GPU: its CPU smoke mode runs every part at tiny sizes on tiny
data, as a bare GPU machine would (gradio, matplotlib and ui/ cannot be imported), and writes every
key; a part that fails or overruns its budget is null with its error while the others still run."""
import json
import os
import time
from pathlib import Path

from conftest import REPO, make_tiny_data, run_module, tiny_checkpoint


BLOCK = """
import sys


class Blocked:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in ("gradio", "matplotlib", "ui"):
            raise ModuleNotFoundError(f"blocked: a bare GPU machine has no {top}", name=top)


sys.meta_path.insert(0, Blocked())
"""


def _blocked(folder):
    """A folder whose sitecustomize makes what a GPU machine lacks unimportable, in every child process too."""
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(BLOCK)
    return folder


def test_the_cpu_smoke_run_writes_every_key_with_sane_values(tmp_path):
    data, ck = make_tiny_data(tmp_path / "mt"), tiny_checkpoint(tmp_path / "ck")
    out = tmp_path / "smoke" / "gpu.json"
    env = {"PYTHONPATH": f"{_blocked(tmp_path / 'blocked')}{os.pathsep}{REPO}"}
    t = time.perf_counter()
    r = run_module("tools.gpu_check", "--cpu-smoke", "--data", data, "--checkpoint", ck, "--out", out,
                   timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert rep["errors"] == {} and rep["mode"] == "cpu-smoke" and rep["device"] == "CPU" and rep["torch"]
    sizes = {"64x4", "128x16", "256x16"}
    assert set(rep["train_steps_per_s"]) == set(rep["train_steps_per_s_eager"]) == sizes
    assert all(v > 0 for v in [*rep["train_steps_per_s"].values(), *rep["train_steps_per_s_eager"].values()])
    # the fast step through aot_eager at the first size (the GPU run: every mode, then the best at every size)
    assert rep["train_fast_errors"] == {} and rep["fast_mode_best"] == "default"
    assert set(rep["train_steps_per_s_fast"]["default"]) == set(rep["compile_s"]["default"]) == {"64x4"}
    assert rep["train_steps_per_s_fast"]["default"]["64x4"] > 0 and rep["compile_s"]["default"]["64x4"] > 0
    assert rep["train_steps_per_s"]["64x4"] == max(rep["train_steps_per_s_eager"]["64x4"],
                                                   rep["train_steps_per_s_fast"]["default"]["64x4"])
    assert rep["train_best"]["64x4"] in ("eager", "fast default") and rep["train_best"]["128x16"] == "eager"
    assert set(rep["synth_s_per_pair"]) == {"256", "1024", "2048"} and all(v > 0 for v in rep["synth_s_per_pair"].values())
    assert rep["export_pairs_per_s"] > 0 and rep["export_pairs"] == 4
    assert rep["background_max_diff"] == 0 and rep["background_syntheses"] > 0
    assert rep["seg_quick_s"] > 0 and rep["seg_quick"]["runs"] == 3 and rep["seg_quick"]["devices"] == ["cpu"]
    assert rep["seg_quick"]["extrapolated_s"] > 0 and rep["seg_quick"]["records"] == 45
    assert rep["ddp_ok"] is True and rep["ddp_backend"] == "gloo"
    assert rep["tests_passed"]["passed"] > 0 and rep["tests_passed"]["failed"] == 0
    md = out.with_suffix(".md").read_text()
    assert "fast default steps / s" in md and "CPU smoke run" in md and "45 records" in md and "**0** (must be 0)" in md
    print(f"smoke run {time.perf_counter() - t:.0f} s")


def test_a_part_that_fails_or_overruns_is_null_with_its_error_and_the_rest_run(tmp_path, monkeypatch):
    from tools import gpu_check as g
    pid_file = tmp_path / "child.pid"

    def fails(c, out):
        out["train_steps_per_s_eager"] = {"64x4": 2.0}     # measured before the failure: kept
        raise RuntimeError("CUDA out of memory")

    def overruns(c, out):      # a child (and its own child) past the budget: both killed with it
        g.run_child(["bash", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], c)

    def works(c, out):
        out["background_max_diff"] = 0
    monkeypatch.setattr(g, "PARTS", {"train": fails, "ddp": overruns, "background": works})
    monkeypatch.setattr(g, "MIN_PART_S", 0.1)
    sizes = g.Sizes(**{**vars(g.SMOKE), "budgets": {"train": 5, "ddp": 2, "background": 5}})
    check = g.Check(tmp_path, tmp_path, g.torch.device("cpu"), sizes, tmp_path)
    report, written = {"errors": {}, "seconds": {}}, []
    t = time.perf_counter()
    g.run_parts(check, report, lambda rep: written.append(dict(rep)), time.monotonic() + 60)
    assert time.perf_counter() - t < 10
    assert report["errors"]["train"] == "RuntimeError: CUDA out of memory"
    assert report["train_steps_per_s"] is None and report["train_steps_per_s_eager"] == {"64x4": 2.0}
    assert report["ddp_ok"] is None and "over its budget of 2 s" in report["errors"]["ddp"]
    assert report["background_max_diff"] == 0 and "background" not in report["errors"]
    assert len(written) == 3                            # the report is written after every part
    time.sleep(0.2)
    assert not alive(int(pid_file.read_text()))


def alive(pid: int) -> bool:
    """A process that runs (a zombie waiting for its reaper does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_bad_flags_exit_2_naming_the_flag(tmp_path, capsys):
    from tools import gpu_check as g
    smoke = ["--cpu-smoke", "--data", str(make_tiny_data(tmp_path / "mt"))]
    cases = ((["--cpu-smoke", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a.json")], "--data"),
             (smoke, "--out"), ([*smoke, "--out", str(tmp_path / "a.txt")], "--out"),
             ([*smoke, "--out", str(g.GPU_REPORT)], "--out"),      # a smoke run never writes the GPU report
             ([*smoke, "--out", str(tmp_path / "a.json"), "--checkpoint", str(tmp_path / "no-ck")], "--checkpoint"))
    for argv, named in cases:
        assert g.main(argv) == 2, argv
        assert named in capsys.readouterr().err, argv
    assert not (tmp_path / "a.json").exists()
