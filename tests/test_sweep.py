"""convexdict sweep: real Dask clusters, scheduler addresses, kill-and-resume, failing cells."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("pandas")

from convexdict.analysis.comparison import VERDICTS  # noqa: E402
from convexdict.cli import main  # noqa: E402
from convexdict.sweeps.config import ROW_FIELDS, load_config  # noqa: E402
from convexdict.sweeps.grid import run_sweep  # noqa: E402

TRAINERS = """
[trainers.relu]
steps = 30
lr = 0.01
batch_size = 40

[trainers.top1]
activation = "topk"
k = 1
steps = 30
lr = 0.01
batch_size = 40
"""
TINY = """
[sweep]
data = [{spec = "toy:superposition_2d", max_samples = 40}]
lams = [0.3]
widths = [2, 4]
seeds = [0]
""" + TRAINERS
VOLATILE = {"time_certify", "time_train", "time_compare", "worker"}


def write(tmp_path, text, name="sweep.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def cluster():
    """A running scheduler with 2 workers, reached by its tcp:// address. Threads in this
    process keep the tests fast; run_sweep's own LocalCluster (worker processes) is tested
    by the first test and by the CLI subprocess."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp://",
                      dashboard_address=":0") as running:
        yield running


def cell_files(out):
    return {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in (out / "cells").glob("*.json")}


def test_local_cluster_and_scheduler_address_agree(tmp_path, cluster, capsys):
    import pandas as pd

    config = write(tmp_path, TINY)
    local = run_sweep(config, tmp_path / "local", workers=2, progress=False)
    table = local.table
    errors = table[["error_stage", "error_type", "error_message"]].dropna().to_string()
    assert (local.n_cells, local.n_run, local.n_errors) == (4, 4, 0), errors
    assert list(table.columns) == list(ROW_FIELDS) and len(table) == 4
    assert table["cell_id"].is_unique and (table["status"] == "ok").all()
    # soundness: every ReLU loss is above the certified P*, every TopK loss above the joint
    # bound, and the certified P* is itself above the joint bound
    assert (table["gap"] >= -1e-9).all()
    relu = table[table["trainer"] == "relu"]
    assert set(relu["bound"]) == {"certified"} and set(relu["verdict"]) <= set(VERDICTS)
    assert (relu["lower_bound"] <= relu["optimum_loss"] + 1e-9).all()
    top = table[table["trainer"] == "top1"]
    assert set(top["verdict"]) == {"not_certifiable"} and set(top["bound"]) == {"joint"}
    assert (top["lower_bound"].to_numpy() <= relu["lower_bound"].to_numpy() + 1e-12).all()
    on_disk = pd.read_csv(tmp_path / "local" / "results.csv")
    assert len(on_disk) == 4 and set(on_disk["cell_id"]) == set(table["cell_id"])
    for cid in table["cell_id"]:
        record = json.loads((tmp_path / "local" / "cells" / f"{cid}.json").read_text())
        assert record["row"]["cell_id"] == cid and record["config"]["lam"] == 0.3
    names = sorted(p.name for p in local.figures)
    assert names == ["frontier_toy-superposition-2d-40.png",
                     "gap_toy-superposition-2d-40_lam0.3.png"]
    assert all(p.stat().st_size > 0 for p in local.figures)

    # the same command against a running scheduler: only the address differs
    code = main(["sweep", str(config), "--scheduler", cluster.scheduler_address,
                 "--out", str(tmp_path / "remote"), "--no-figures"])
    printed = capsys.readouterr().out
    assert code == 0 and "4 cells: 0 already done, 4 run, 0 failed" in printed, printed
    remote = pd.read_csv(tmp_path / "remote" / "results.csv")
    for name in set(ROW_FIELDS) - VOLATILE:
        a, b = on_disk[name].to_numpy(), remote[name].to_numpy()
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)
        else:
            assert list(a) == list(b), name


def test_failing_cells_record_their_error_and_the_others_finish(tmp_path, cluster):
    config = write(tmp_path, """
[sweep]
data = [{spec = "toy:superposition_2d", max_samples = 40}, "toy:no_such_toy"]
lams = [0.3]
widths = [1, 2]
seeds = [0]

[trainers.top2]
activation = "topk"
k = 2
steps = 20
batch_size = 40
""")
    result = run_sweep(config, tmp_path / "out", scheduler=cluster.scheduler_address,
                       progress=False, figures=False)
    rows = result.table.set_index(["data", "width"])
    assert len(rows) == 4 and result.n_errors == 3
    ok = rows.loc[("toy:superposition_2d[40]", 2)]
    assert ok["status"] == "ok" and np.isfinite(ok["loss"])
    k_too_big = rows.loc[("toy:superposition_2d[40]", 1)]
    assert (k_too_big["error_stage"], k_too_big["error_type"]) == ("train", "ValueError")
    assert "'k'" in k_too_big["error_message"]
    for width in (1, 2):
        bad = rows.loc[("toy:no_such_toy", width)]
        assert (bad["status"], bad["error_stage"], bad["error_type"]) == ("error", "load",
                                                                         "ValueError")
        assert "Unknown toy" in bad["error_message"]
    # failed cells count as done unless asked: a rerun needs no cluster at all
    before = cell_files(tmp_path / "out")
    again = run_sweep(config, tmp_path / "out", scheduler="tcp://127.0.0.1:1", progress=False,
                      figures=False)
    assert (again.n_skipped, again.n_run, again.n_errors) == (4, 0, 3)
    assert cell_files(tmp_path / "out") == before


def test_killed_sweep_resumes_without_recomputing_finished_cells(tmp_path, cluster, capsys):
    # one worker runs the cells one after another (a cell's evaluate task outranks the next
    # train task), so the kill at the first cell file always leaves cells pending
    config = write(tmp_path, TINY.replace("steps = 30", "steps = 200"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "convexdict", "sweep", str(config), "--workers", "1",
           "--out", str(out), "--no-figures"]
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not list((out / "cells").glob("*.json")) and time.monotonic() < deadline:
            assert proc.poll() is None, f"the sweep ended early: {log.read_text()[-2000:]}"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep, its cluster and workers
        proc.wait()
    finished = cell_files(out)
    assert 1 <= len(finished) < 4, "kill the sweep while cells are pending"

    argv = ["sweep", str(config), "--scheduler", cluster.scheduler_address, "--out", str(out)]
    assert main([*argv, "--no-figures"]) == 0
    n = len(finished)
    assert f"4 cells: {n} already done, {4 - n} run, 0 failed" in capsys.readouterr().out
    after = cell_files(out)
    assert len(after) == 4
    assert {name: after[name] for name in finished} == finished  # same bytes, same mtime
    import pandas as pd

    table = pd.read_csv(out / "results.csv")
    assert len(table) == 4 and table["cell_id"].is_unique and (table["status"] == "ok").all()
    assert {f"{cid}.json" for cid in table["cell_id"]} == set(after)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[sweep\ndata = 1", "is not valid TOML"),
        (TINY.replace("lams = [0.3]\n", ""), "'sweep.lams' must be a non-empty list; it is"),
        (TINY.replace("lams = [0.3]", "lams = [0.3, -1]"), "sweep.lams[1]"),
        (TINY.replace("widths = [2, 4]", "widths = [0]"), "sweep.widths[0]"),
        (TINY.replace("steps = 30\nlr", "step = 30\nlr", 1), "trainers.relu keys"),
        (TINY.replace('activation = "topk"', 'activation = "gelu"'), "trainers.top1.activation"),
        (TINY.replace("[sweep]", "[swep]"), "top-level tables"),
        (TINY.replace("\n[trainers.relu]", "\n[certify]\ntol = 1e-6\nbogus = 1\n[trainers.relu]"),
         "[certify]"),
    ],
)
def test_bad_config_is_one_line_with_exit_code_2(tmp_path, capsys, text, expected):
    config = write(tmp_path, text)
    code = main(["sweep", str(config), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert expected in err and str(config) in err
    assert not (tmp_path / "out").exists()


def test_bad_arguments_are_one_line_with_exit_code_2(tmp_path, capsys):
    config = write(tmp_path, TINY)
    for argv in (["--workers", "0"], ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"]):
        assert main(["sweep", str(config), "--out", str(tmp_path / "o"), *argv]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "--workers" in err
    assert main(["sweep", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cell_ids_are_stable_and_follow_every_setting(tmp_path):
    ids = [c.cell_id for c in load_config(write(tmp_path, TINY)).cells()]
    assert len(set(ids)) == 4 and ids == [c.cell_id for c in load_config(tmp_path / "sweep.toml")
                                         .cells()]
    changed = load_config(write(tmp_path, TINY.replace("lr = 0.01", "lr = 0.02", 1), "b.toml"))
    new = {c.trainer: c.cell_id for c in changed.cells() if c.width == 2}
    assert new["relu"] not in ids and new["top1"] in ids


# --------------------------------------------------------------------------- issue 12


def test_huge_lam_keeps_its_exponent_in_cell_ids(tmp_path):
    ids = [c.cell_id for c in load_config(write(tmp_path, TINY.replace(
        "lams = [0.3]", "lams = [1e+300, 1e-300, 2e6]"))).cells()]
    assert any("-lam1e300-" in i for i in ids) and any("-lam1e-300-" in i for i in ids)
    assert any("-lam2e06-" in i for i in ids)
    assert len(set(ids)) == len(ids) == 12


@pytest.mark.parametrize(
    ("data", "expected"),
    [('"toy:no_such_toy"', "sweep.data[1]"), ('"missing.npy"', "does not exist"),
     ('"."', "is a directory")],
)
def test_bad_data_is_refused_before_the_run(tmp_path, capsys, data, expected):
    config = write(tmp_path, TINY.replace("max_samples = 40}]", f"max_samples = 40}}, {data}]"))
    code = main(["sweep", str(config), "--workers", "1", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert expected in err and "sweep.data[1]" in err
    assert not (tmp_path / "out").exists()


def test_bad_out_is_refused_before_the_run(tmp_path, capsys):
    config = write(tmp_path, TINY)
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "out"):
        code = main(["sweep", str(config), "--workers", "1", "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "--out" in err


def test_failed_cells_exit_1_and_files_follow_the_umask(tmp_path, cluster, capsys):
    config = write(tmp_path, TINY.replace("k = 1", "k = 9").replace(
        "[trainers.relu]\nsteps = 30\nlr = 0.01\nbatch_size = 40\n", ""))
    old = os.umask(0o022)
    try:
        code = main(["sweep", str(config), "--scheduler", cluster.scheduler_address,
                     "--out", str(tmp_path / "out"), "--no-figures"])
    finally:
        os.umask(old)
    printed = capsys.readouterr().out
    assert code == 1 and "2 cells: 0 already done, 2 run, 2 failed" in printed, printed
    written = [tmp_path / "out" / "results.csv", *(tmp_path / "out" / "cells").iterdir()]
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o644, path
    assert not list((tmp_path / "out").rglob("*.tmp"))
