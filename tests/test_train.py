"""The SGD trainer: determinism, descent, resume, memory maps, DDP, activations, CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from convexdict_solvers.sgd.trainer import TrainConfig, train

from convexdict import SAE, sae_loss
from convexdict.cli import main
from convexdict.training.train import TrainResult, train_sae

WEIGHTS = ("W_enc", "b_enc", "W_dec", "b_dec")


def _toy(n: int = 240, d: int = 5, seed: int = 0) -> np.ndarray:
    """Sparse non-negative combinations of a few directions plus a little noise."""
    rng = np.random.default_rng(seed)
    atoms = rng.normal(size=(6, d))
    codes = rng.exponential(size=(n, 6)) * (rng.random((n, 6)) < 0.3)
    return codes @ atoms + 0.05 * rng.normal(size=(n, d)) + 1.0


def _assert_same(a: dict, b: dict) -> None:
    for name in WEIGHTS:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def _as_sae(out: dict) -> SAE:
    return SAE(*(out[name] for name in WEIGHTS))


# ---------------------------------------------------------------------------- determinism
def test_same_seed_same_weights_different_seed_different() -> None:
    X = _toy()
    kw = {"steps": 40, "batch_size": 32, "device": "cpu"}
    a = train_sae(X, 0.1, 8, seed=3, **kw)
    b = train_sae(X, 0.1, 8, seed=3, **kw)
    c = train_sae(X, 0.1, 8, seed=4, **kw)
    for name in WEIGHTS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.allclose(a.W_dec, c.W_dec)


def test_training_decreases_the_canonical_loss() -> None:
    X, lam = _toy(), 0.05
    config = TrainConfig(lam=lam, width=8, steps=0, batch_size=64, quiet=True, dtype="float64")
    init = _as_sae(train(X, config))
    np.testing.assert_allclose(init.b_dec, X.mean(axis=0))
    np.testing.assert_allclose(init.decoder_norms(), 1.0)
    result = train_sae(X, lam, 8, steps=300, batch_size=64, lr=3e-3, device="cpu",
                       dtype="float64", return_history=True, log_every=50)
    assert isinstance(result, TrainResult) and result.certifiable
    assert sae_loss(result.sae, X, lam) < 0.5 * sae_loss(init, X, lam)
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert list(result.history["step"]) == [50, 100, 150, 200, 250, 300]
    metrics = result.evaluate(X, lam)
    assert metrics["loss"] == pytest.approx(sae_loss(result.sae, X, lam), rel=1e-12)
    assert 0.5 < metrics["explained_variance"] <= 1.0


def test_init_weights_are_used_and_validated() -> None:
    X = _toy(n=50)
    rng = np.random.default_rng(1)
    init = {"W_enc": rng.normal(size=(5, 3)), "b_enc": rng.normal(size=3),
            "W_dec": rng.normal(size=(3, 5)), "b_dec": rng.normal(size=5)}
    config = TrainConfig(lam=0.1, width=3, steps=0, dtype="float64", quiet=True)
    _assert_same(train(X, config, init=init), init)
    with pytest.raises(ValueError, match="'init'"):
        train(X, config, init={"W_enc": init["W_enc"]})
    with pytest.raises(ValueError, match="'init'"):
        train(X, TrainConfig(lam=0.1, width=4, steps=0, quiet=True), init=init)


# ---------------------------------------------------------------------------- resume
class _Crash(Exception):
    pass


@pytest.mark.parametrize("activation", ["relu", "batchtopk"])
def test_kill_and_resume_is_bit_identical(tmp_path: Path, activation: str) -> None:
    X = _toy()
    k = 2 if activation == "batchtopk" else None
    common = {"lam": 0.05, "width": 8, "steps": 60, "batch_size": 48, "lr": 3e-3,
              "warmup_steps": 5, "l1_warmup_steps": 10, "resample_dead_every": 20,
              "dead_window": 5, "activation": activation, "k": k, "log_every": 7,
              "quiet": True, "checkpoint_every": 10}
    reference = train(X, TrainConfig(**common))
    config = TrainConfig(**common, checkpoint_dir=str(tmp_path))

    def crash(step: int, record: dict) -> None:
        if step >= 35:  # the last checkpoint is at step 30: steps 31..35 are lost
            raise _Crash

    with pytest.raises(_Crash):
        train(X, config, callback=crash)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ckpt_00000020.pt", "ckpt_00000030.pt"]  # atomic, pruned, no .tmp
    partial = train(X, config, resume=True, stop_after=45)  # a second interruption
    assert partial["step"] == 45
    resumed = train(X, config, resume=True)
    assert resumed["step"] == 60
    _assert_same(resumed, reference)
    for key, values in reference["history"].items():
        if key != "time":
            np.testing.assert_array_equal(resumed["history"][key], values, err_msg=key)


def test_resume_refuses_a_different_run(tmp_path: Path) -> None:
    X = _toy()
    train(X, TrainConfig(lam=0.1, width=4, steps=10, quiet=True, checkpoint_dir=str(tmp_path)))
    other = TrainConfig(lam=0.2, width=4, steps=10, quiet=True, checkpoint_dir=str(tmp_path))
    with pytest.raises(ValueError, match="lam"):
        train(X, other, resume=True)


# ---------------------------------------------------------------------------- memmap
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_memmap_input_matches_in_memory(tmp_path: Path, dtype: str) -> None:
    X = _toy(n=300).astype(dtype)
    path = tmp_path / "x.npy"
    np.save(path, X)
    kw = {"steps": 30, "batch_size": 40, "device": "cpu", "dtype": dtype}
    a = train_sae(X, 0.1, 6, **kw)
    b = train_sae(str(path), 0.1, 6, **kw)
    c = train_sae(np.load(path, mmap_mode="r"), 0.1, 6, **kw)
    for name in WEIGHTS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        np.testing.assert_array_equal(getattr(a, name), getattr(c, name))


# ---------------------------------------------------------------------------- DDP
_DDP_SCRIPT = """
import os, sys
import numpy as np
import torch
from convexdict_solvers.sgd.trainer import TrainConfig, train

X = np.load(sys.argv[1])
for name, kw in (("relu", {}), ("batchtopk", {"activation": "batchtopk", "k": 2})):
    cfg = TrainConfig(lam=0.05, width=6, steps=25, batch_size=33, lr=3e-3, dtype="float64",
                      quiet=True, seed=5, log_every=5, resample_dead_every=10,
                      dead_window=3, **kw)
    out = train(X, cfg)
    if int(os.environ["RANK"]) == 0:
        np.savez(os.path.join(sys.argv[2], name + ".npz"),
                 **{k: v for k, v in out.items() if k not in ("history", "step")},
                 loss=out["history"]["loss"])
torch.distributed.barrier()  # a clean gloo shutdown: without it the exit may abort
torch.distributed.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ddp_two_processes_match_single_process(tmp_path: Path) -> None:
    """Two CPU ranks (gloo), launched the way torchrun launches them (RANK, WORLD_SIZE,
    MASTER_ADDR/PORT in the environment; without torchrun's agent process, to save a
    torch import), against one process on the same global batches. The batch of 33
    splits 17/16, so the shard weighting is exercised too."""
    X = _toy(n=200)
    np.save(tmp_path / "x.npy", X)
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(_DDP_SCRIPT))
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "x.npy"), str(tmp_path)], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        logs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)[-3000:]
    for name, kw in (("relu", {}), ("batchtopk", {"activation": "batchtopk", "k": 2})):
        cfg = TrainConfig(lam=0.05, width=6, steps=25, batch_size=33, lr=3e-3,
                          dtype="float64", quiet=True, seed=5, log_every=5,
                          resample_dead_every=10, dead_window=3, **kw)
        single = train(X, cfg)
        with np.load(tmp_path / f"{name}.npz") as ddp:
            for key in (*WEIGHTS, *(["threshold"] if "k" in kw else [])):
                np.testing.assert_allclose(ddp[key], single[key], rtol=0, atol=1e-10,
                                           err_msg=f"{name}: {key}")
            np.testing.assert_allclose(ddp["loss"], single["history"]["loss"], atol=1e-10)


# ---------------------------------------------------------------------------- activations
def test_topk_batchtopk_jumprelu_give_the_sparsity_they_promise() -> None:
    X = _toy()
    kw = {"steps": 40, "batch_size": 48, "device": "cpu", "return_history": True}
    topk = train_sae(X, 0.0, 10, activation="topk", k=3, **kw)
    assert not topk.certifiable and topk.k == 3 and topk.threshold is None
    codes = topk.encode(X)
    assert (codes >= 0).all() and np.count_nonzero(codes, axis=1).max() <= 3
    assert np.all(topk.history["l0"] <= 3)

    batch = train_sae(X, 0.0, 10, activation="batchtopk", k=3, **kw)
    assert np.all(batch.history["l0"] <= 3 + 1e-12)  # exactly k on average at train time
    assert np.all(batch.history["l0"] > 2.5)
    assert batch.threshold.shape == () and float(batch.threshold) > 0
    pre = X @ batch.sae.W_enc + batch.sae.b_enc
    np.testing.assert_array_equal(batch.encode(X), np.where(pre > batch.threshold, pre, 0))

    jump = train_sae(X, 0.01, 10, activation="jumprelu", **kw)
    theta = jump.threshold
    assert theta.shape == (10,) and np.all(theta > 0)
    pre = X @ jump.sae.W_enc + jump.sae.b_enc
    np.testing.assert_array_equal(jump.encode(X) > 0, pre > theta)
    assert jump.evaluate(X, 0.01)["l0"] == pytest.approx(np.mean((pre > theta).sum(axis=1)))


# ---------------------------------------------------------------------------- validation
_X = _toy(n=20)


@pytest.mark.parametrize(
    ("args", "kwargs", "name"),
    [
        ((_X, -1.0, 4), {}, "lam"),
        ((_X, float("nan"), 4), {}, "lam"),
        ((_X, 0.1, 0), {}, "width"),
        ((_X, 0.1, 2.5), {}, "width"),
        ((_X, 0.1, 4), {"steps": 0}, "steps"),
        ((_X, 0.1, 4), {"batch_size": 0}, "batch_size"),
        ((_X, 0.1, 4), {"lr": 0.0}, "lr"),
        ((_X, 0.1, 4), {"seed": -1}, "seed"),
        ((_X, 0.1, 4), {"dtype": "float16"}, "dtype"),
        ((_X, 0.1, 4), {"activation": "gelu"}, "activation"),
        ((_X, 0.1, 4), {"k": 2}, "k"),
        ((_X, 0.1, 4), {"activation": "topk"}, "k"),
        ((_X, 0.1, 4), {"activation": "topk", "k": 5}, "k"),
        ((_X, 0.1, 4), {"device": "tpu"}, "device"),
        ((_X, 0.1, 4), {"resume": True}, "resume"),
        ((_X, 0.1, 4), {"decay": "exponential"}, "decay"),
        ((_X, 0.1, 4), {"warmup_steps": -1}, "warmup_steps"),
        ((_X[0], 0.1, 4), {}, "X"),
        ((np.where(_X > 1.5, np.nan, _X), 0.1, 4), {}, "X"),
        (("missing.txt", 0.1, 4), {}, "X"),
    ],
)
def test_bad_arguments_name_the_argument(args: tuple, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"'{name}'"):
        train_sae(*args, steps=kwargs.pop("steps", 2), device=kwargs.pop("device", "cpu"),
                  **kwargs)


def test_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="l2"):
        train_sae(_X, 0.1, 4, steps=2, device="cpu", l2=1.0)


def test_cuda_request_without_cuda_is_explained() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="'device'.*torch.cuda.is_available"):
        train_sae(_X, 0.1, 4, device="cuda")


# ---------------------------------------------------------------------------- CLI
def test_cli_train_writes_outputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    X = _toy(n=100)
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "run"
    code = main(["train", str(tmp_path / "x.npy"), "--lam", "0.05", "--width", "6",
                 "--steps", "30", "--batch-size", "32", "--device", "cpu", "--quiet",
                 "--out", str(out)])
    assert code == 0
    assert "trained relu SAE" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    for key in ("loss", "l0", "explained_variance", "dead_fraction", "steps", "time_s"):
        assert key in summary
    assert summary["steps"] == 30
    sae = SAE.load(str(out)) if (out / "cfg.json").exists() else SAE(
        **{k: v for k, v in np.load(out / "sae.npz").items()})
    assert summary["loss"] == pytest.approx(sae_loss(sae, X, 0.05), rel=1e-9)
    assert set(np.load(out / "history.npz").files) >= {"step", "loss", "l0"}
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_cli_bad_lam_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    np.save(tmp_path / "x.npy", _toy(n=30))
    code = main(["train", str(tmp_path / "x.npy"), "--lam", "-1", "--width", "4",
                 "--device", "cpu", "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert "'lam'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_cli_reads_every_format_through_the_one_loader(tmp_path: Path) -> None:
    """Issue 12: train had its own .npy loader; now
    convexdict.data.datasets.load_data(mmap=True)."""
    from convexdict.cli import train as cli_train
    from convexdict.data.datasets import load_data

    X = _toy(n=12)
    np.savez(tmp_path / "a.npz", other=np.zeros(3), X=X)
    np.savetxt(tmp_path / "b.csv", X, delimiter=",", header="a,b,c,d,e", comments="")
    np.testing.assert_array_equal(cli_train.load_data(str(tmp_path / "a.npz")), X)
    np.testing.assert_allclose(cli_train.load_data(str(tmp_path / "b.csv")), X)
    np.save(tmp_path / "c.npy", X.astype(np.float32))
    mapped = cli_train.load_data(str(tmp_path / "c.npy"))
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.float32
    np.testing.assert_array_equal(mapped, load_data(str(tmp_path / "c.npy")))
    np.save(tmp_path / "nan.npy", np.where(X > 1.5, np.nan, X))
    with pytest.raises(ValueError, match="NaN"):
        cli_train.load_data(str(tmp_path / "nan.npy"))


def _one_line_exit_2(code: int, capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def _train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", str(data), "--lam", "0.05", "--width", "4", "--steps", "20",
            "--batch-size", "16", "--device", "cpu", "--quiet", "--out", str(out), *extra]


@pytest.mark.parametrize("lam", ["0", "-0.0", "nan", "inf"])
def test_cli_lam_zero_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                 lam: str) -> None:
    np.save(tmp_path / "x.npy", _toy(n=30))
    argv = _train_argv(tmp_path / "x.npy", tmp_path / "run", "--checkpoint-dir",
                       str(tmp_path / "ck"))
    argv[argv.index("--lam") + 1] = lam
    err = _one_line_exit_2(main(argv), capsys)
    assert "'lam'" in err and "(0, inf)" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "ck").exists()


def test_cli_train_help_says_lam_positive(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(> 0)" in text and ">= 0" not in text


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY", b"junk"])
def test_cli_empty_or_corrupt_npy_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                             content: bytes) -> None:
    (tmp_path / "x.npy").write_bytes(content)
    err = _one_line_exit_2(main(_train_argv(tmp_path / "x.npy", tmp_path / "run")), capsys)
    assert "x.npy" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="'X'.*x.npy"):
        train_sae(str(tmp_path / "x.npy"), 0.1, 4, steps=2, device="cpu")


def test_cli_bad_output_paths_fail_before_any_work(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    np.save(tmp_path / "x.npy", _toy(n=30))
    (tmp_path / "file").write_text("not a folder")
    for extra, flag in ((["--out", str(tmp_path / "file" / "run")], "--out"),
                        (["--out", str(tmp_path / "file")], "--out"),
                        (["--checkpoint-dir", str(tmp_path / "file")], "--checkpoint-dir"),
                        (["--checkpoint-dir", str(tmp_path / "file" / "ck")],
                         "--checkpoint-dir")):
        err = _one_line_exit_2(main(_train_argv(tmp_path / "x.npy", tmp_path / "run", *extra)),
                               capsys)
        assert flag in err
    assert not (tmp_path / "run").exists()
    err = _one_line_exit_2(main(_train_argv(tmp_path / "x.npy", tmp_path / "run", "--resume")),
                           capsys)
    assert "--checkpoint-dir" in err


def test_cli_outputs_get_umask_permissions(tmp_path: Path) -> None:
    """Issue 12: mkstemp left outputs at mode 0600."""
    np.save(tmp_path / "x.npy", _toy(n=30))
    old = os.umask(0o027)
    try:
        assert main(_train_argv(tmp_path / "x.npy", tmp_path / "run", "--checkpoint-dir",
                                str(tmp_path / "ck"))) == 0
    finally:
        os.umask(old)
    files = [*(tmp_path / "run").iterdir(), *(tmp_path / "ck").iterdir()]
    assert {"summary.json", "history.npz", "cfg.json"} <= {f.name for f in files}
    for f in files:
        assert not f.name.endswith(".tmp")
        assert f.stat().st_mode & 0o777 == 0o666 & ~0o027, f


# ---------------------------------------------------------------------------- resume fallback
_RESUME = {"lam": 0.05, "width": 6, "steps": 40, "batch_size": 32, "lr": 3e-3, "quiet": True,
           "checkpoint_every": 10, "log_every": 5}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def test_resume_falls_back_past_a_truncated_checkpoint(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    X = _toy()
    reference = train(X, TrainConfig(**_RESUME))
    config = TrainConfig(**_RESUME, checkpoint_dir=str(tmp_path))
    train(X, config, stop_after=30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_00000020.pt", "ckpt_00000030.pt"]
    _truncate(tmp_path / "ckpt_00000030.pt")
    capsys.readouterr()
    resumed = train(X, config, resume=True)
    err = capsys.readouterr().err
    assert "resumed from step 20" in err and "ckpt_00000030.pt" in err
    assert len(err.strip().splitlines()) == 1
    assert resumed["step"] == 40
    _assert_same(resumed, reference)  # nothing lost but the steps after step 20
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "ckpt_00000030.pt.unreadable" in names and "ckpt_00000040.pt" in names


def test_resume_without_checkpoints_starts_at_step_0(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    X = _toy()
    config = TrainConfig(**_RESUME, checkpoint_dir=str(tmp_path / "none"))
    out = train(X, config, resume=True)
    err = capsys.readouterr().err
    assert "no checkpoint" in err and "step 0" in err and len(err.strip().splitlines()) == 1
    _assert_same(out, train(X, TrainConfig(**_RESUME)))


def test_resume_with_only_unreadable_checkpoints(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    X = _toy()
    config = TrainConfig(**_RESUME, checkpoint_dir=str(tmp_path / "ck"))
    train(X, config, stop_after=20)
    for path in (tmp_path / "ck").iterdir():
        _truncate(path)
    with pytest.raises(ValueError, match="'checkpoint_dir'.*none is readable"):
        train(X, config, resume=True)
    np.save(tmp_path / "x.npy", X)
    capsys.readouterr()
    argv = ["train", str(tmp_path / "x.npy"), "--lam", "0.05", "--width", "6", "--steps", "40",
            "--batch-size", "32", "--lr", "3e-3", "--device", "cpu", "--quiet", "--out",
            str(tmp_path / "run"), "--checkpoint-dir", str(tmp_path / "ck"), "--resume"]
    err = _one_line_exit_2(main(argv), capsys)
    assert "none is readable" in err and "ckpt_00000020.pt" in err


# ---------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_float64_matches_cpu() -> None:
    X = _toy()
    kw = {"steps": 30, "batch_size": 48, "dtype": "float64"}
    cpu = train_sae(X, 0.05, 8, device="cpu", **kw)
    gpu = train_sae(X, 0.05, 8, device="cuda", **kw)
    np.testing.assert_allclose(gpu.W_dec, cpu.W_dec, atol=1e-8)


def test_cli_resume_reports_the_step_and_skips_a_truncated_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    np.save(tmp_path / "x.npy", _toy(n=40))
    ck = tmp_path / "ck"
    argv = _train_argv(tmp_path / "x.npy", tmp_path / "run", "--checkpoint-dir", str(ck),
                       "--resume")
    assert main(argv) == 0
    assert "no checkpoint" in capsys.readouterr().err
    assert sorted(p.name for p in ck.iterdir()) == ["ckpt_00000020.pt"]
    (ck / "ckpt_00000030.pt").write_bytes((ck / "ckpt_00000020.pt").read_bytes()[:100])
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "resumed from step 20" in err and "ckpt_00000030.pt" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
