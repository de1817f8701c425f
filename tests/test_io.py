"""Reading and writing SAE files, and converting other libraries' losses to canonical units.

Each foreign format is built by hand here (no SAELens, dictionary_learning or sparsify
install), and each library's forward pass or loss formula is recomputed in torch from the
raw tensors, as that library writes it, then compared with the loaded convexdict SAE.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file as np_load_safetensors
from safetensors.torch import save_file

from convexdict.data.formats import format_load_notes
from convexdict.data.loss_units import (
    dictionary_learning_to_canonical,
    saelens_to_canonical,
    sparsify_to_canonical,
    to_canonical_loss,
    total_variance,
)
from convexdict.data.writers import saelens_config, save_sae
from convexdict.models.sae import SAE, load_sae, sae_loss_terms

D, K, N = 5, 7, 40


def random_sae(seed: int = 0, d: int = D, k: int = K) -> SAE:
    rng = np.random.default_rng(seed)
    return SAE(
        rng.standard_normal((d, k)),
        rng.standard_normal(k) * 0.3,
        rng.standard_normal((k, d)),
        rng.standard_normal(d),
    )


@pytest.fixture
def X() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((N, D))


def raw_tensors(seed: int = 2, d: int = D, k: int = K) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "W_enc": torch.randn(d, k, generator=g),
        "b_enc": 0.3 * torch.randn(k, generator=g),
        "W_dec": torch.randn(k, d, generator=g),
        "b_dec": torch.randn(d, generator=g),
    }


def write_saelens(path, tensors, **cfg_fields) -> None:
    path.mkdir(parents=True, exist_ok=True)
    cfg = {"architecture": "standard", "d_in": D, "d_sae": K, "dtype": "float32",
           "apply_b_dec_to_input": True}
    cfg.update(cfg_fields)
    cfg = {key: value for key, value in cfg.items() if value is not MISSING}
    save_file(
        {k: v.contiguous() for k, v in tensors.items()}, str(path / "sae_weights.safetensors")
    )
    (path / "cfg.json").write_text(json.dumps(cfg))


MISSING = object()  # write_saelens(..., key=MISSING) leaves the key out of cfg.json


def saelens_forward(t: dict[str, torch.Tensor], x: torch.Tensor, apply_b_dec: bool):
    """SAELens StandardSAE.encode/decode (normalize_activations 'none'), in float64."""
    t = {k: v.double() for k, v in t.items()}
    sae_in = x - t["b_dec"] * apply_b_dec
    feats = torch.relu(sae_in @ t["W_enc"] + t["b_enc"])
    return feats, feats @ t["W_dec"] + t["b_dec"]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", ["sae_dir", "weights.npz"])
def test_save_load_round_trip_is_exact(tmp_path, name):
    sae = random_sae()
    save_sae(sae, tmp_path / name)
    loaded, info = load_sae(tmp_path / name, return_info=True)
    for key in ("W_enc", "b_enc", "W_dec", "b_dec"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(sae, key))
    assert info["certifiable"] and info["activation"] == "relu"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_sae_methods_delegate_to_io(tmp_path, X):
    sae = random_sae()
    sae.save(str(tmp_path / "s"))
    np.testing.assert_array_equal(SAE.load(str(tmp_path / "s")).encode(X), sae.encode(X))


def test_float32_save_is_close(tmp_path, X):
    sae = random_sae()
    save_sae(sae, tmp_path / "s", dtype="float32")
    loaded = load_sae(tmp_path / "s")
    np.testing.assert_allclose(loaded.reconstruct(X), sae.reconstruct(X), rtol=1e-5, atol=1e-5)


def test_saelens_layout_written(tmp_path):
    sae = random_sae()
    save_sae(sae, tmp_path / "s")
    assert sorted(os.listdir(tmp_path / "s")) == ["cfg.json", "sae_weights.safetensors"]
    weights = np_load_safetensors(str(tmp_path / "s" / "sae_weights.safetensors"))
    shapes = {k: v.shape for k, v in weights.items()}
    assert shapes == {"W_enc": (D, K), "b_enc": (K,), "W_dec": (K, D), "b_dec": (D,)}
    assert all(v.dtype == np.float64 for v in weights.values())
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert cfg == saelens_config(sae)
    assert cfg["architecture"] == "standard"
    assert (cfg["d_in"], cfg["d_sae"], cfg["dtype"]) == (D, K, "float64")
    assert cfg["apply_b_dec_to_input"] is False
    assert cfg["normalize_activations"] == "none"
    assert cfg["activation_fn_str"] == "relu"


def test_save_overwrites_and_rejects_file_target(tmp_path):
    save_sae(random_sae(0), tmp_path / "s")
    save_sae(random_sae(1), tmp_path / "s")
    np.testing.assert_array_equal(load_sae(tmp_path / "s").W_enc, random_sae(1).W_enc)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        save_sae(random_sae(), tmp_path / "f")
    with pytest.raises(ValueError, match="format"):
        save_sae(random_sae(), tmp_path / "g", format="sparsify")


# --------------------------------------------------------------------------- SAELens


@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_saelens_b_dec_folding_matches_forward(tmp_path, X, apply_b_dec):
    t = raw_tensors()
    write_saelens(tmp_path / "s", t, apply_b_dec_to_input=apply_b_dec)
    sae, info = load_sae(tmp_path / "s", return_info=True)
    feats, out = saelens_forward(t, torch.from_numpy(X), apply_b_dec)
    np.testing.assert_allclose(sae.encode(X), feats.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sae.reconstruct(X), out.numpy(), rtol=1e-12, atol=1e-12)
    assert info["format"] == "saelens" and info["certifiable"]
    if apply_b_dec:
        assert any("apply_b_dec_to_input" in note for note in info["notes"])


def test_saelens_missing_apply_b_dec_is_an_error_not_a_guess(tmp_path):
    """Issue 12: a missing key that changes the loss is refused, never assumed."""
    write_saelens(tmp_path / "s", raw_tensors(), apply_b_dec_to_input=MISSING)
    with pytest.raises(ValueError, match="apply_b_dec_to_input") as err:
        load_sae(tmp_path / "s")
    assert "cfg.json" in str(err.value) and "\n" not in str(err.value)
    write_saelens(tmp_path / "t", raw_tensors(), apply_b_dec_to_input="yes")
    with pytest.raises(ValueError, match="apply_b_dec_to_input"):
        load_sae(tmp_path / "t")


def test_saelens_documented_defaults_are_reported_in_the_notes(tmp_path):
    write_saelens(tmp_path / "s", raw_tensors(), architecture=MISSING)
    _, info = load_sae(tmp_path / "s", return_info=True)
    for key in ("architecture", "activation_fn_str", "normalize_activations"):
        assert any(f"no '{key}'" in note for note in info["notes"]), info["notes"]
    lines = format_load_notes(info)
    assert lines[0].startswith("loaded saelens SAE (relu)")
    assert any("normalize_activations" in line for line in lines[1:])


@pytest.mark.parametrize("legacy_bool", [False, True])
def test_saelens_expected_average_scaling(tmp_path, X, legacy_bool):
    t = raw_tensors()
    norm = True if legacy_bool else "expected_average_only_in"
    write_saelens(tmp_path / "s", t, normalize_activations=norm)
    with pytest.raises(ValueError, match="norm_scaling_factor"):
        load_sae(tmp_path / "s")
    s = 2.5
    sae = load_sae(tmp_path / "s", norm_scaling_factor=s)
    feats, out = saelens_forward(t, s * torch.from_numpy(X), True)  # SAE sees s * x
    np.testing.assert_allclose(sae.encode(X), feats.numpy(), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(sae.reconstruct(X), out.numpy() / s, rtol=1e-11, atol=1e-11)


def test_saelens_finetuning_scaling_factor_folded(tmp_path, X):
    t = raw_tensors()
    t["scaling_factor"] = torch.linspace(0.5, 2.0, K)
    write_saelens(tmp_path / "s", t, finetuning_scaling_factor=True)
    feats, _ = saelens_forward(t, torch.from_numpy(X), True)
    expected = (feats * t["scaling_factor"].double()) @ t["W_dec"].double() + t["b_dec"].double()
    np.testing.assert_allclose(
        load_sae(tmp_path / "s").reconstruct(X), expected.numpy(), atol=1e-11
    )


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"normalize_activations": "layer_norm"}, "layer_norm"),
        ({"architecture": "jumprelu"}, "jumprelu"),
        ({"architecture": "standard", "activation_fn_str": "tanh-relu"}, "tanh-relu"),
        ({"d_sae": K + 1}, "d_sae"),
    ],
)
def test_saelens_unsupported_configs_raise(tmp_path, fields, match):
    write_saelens(tmp_path / "s", raw_tensors(), **fields)
    with pytest.raises(ValueError, match=match):
        load_sae(tmp_path / "s")


def test_saelens_topk_is_marked(tmp_path):
    write_saelens(tmp_path / "s", raw_tensors(), architecture="topk", k=3)
    _, info = load_sae(tmp_path / "s", return_info=True)
    assert (info["activation"], info["k"], info["certifiable"]) == ("topk", 3, False)


# --------------------------------------------------------------------------- dictionary_learning


def dl_state(seed: int = 3) -> dict[str, torch.Tensor]:
    """An AutoEncoder state dict in float64 (so its unit decoder columns are unit to 1e-16)."""
    g = torch.Generator().manual_seed(seed)
    kw = {"generator": g, "dtype": torch.float64}
    dec = torch.randn(D, K, **kw)
    return {
        "bias": torch.randn(D, **kw),
        "encoder.weight": torch.randn(K, D, **kw),
        "encoder.bias": 0.3 * torch.randn(K, **kw),
        "decoder.weight": dec / dec.norm(dim=0, keepdim=True),  # unit columns, as trained
    }


@pytest.mark.parametrize("as_dir", [False, True])
def test_dictionary_learning_state_dict_reproduces_forward(tmp_path, X, as_dir):
    state = dl_state()
    torch.save(state, tmp_path / "ae.pt")
    sae, info = load_sae(tmp_path if as_dir else tmp_path / "ae.pt", return_info=True)
    s = {k: v.double() for k, v in state.items()}
    x = torch.from_numpy(X)
    f = torch.relu(F.linear(x - s["bias"], s["encoder.weight"], s["encoder.bias"]))
    x_hat = F.linear(f, s["decoder.weight"]) + s["bias"]
    np.testing.assert_allclose(sae.encode(X), f.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sae.reconstruct(X), x_hat.numpy(), rtol=1e-12, atol=1e-12)
    assert (info["format"], info["activation"], info["certifiable"]) == (
        "dictionary_learning",
        "relu",
        True,
    )


def test_dictionary_learning_compiled_prefix_and_topk(tmp_path):
    state = {f"_orig_mod.{k}": v for k, v in dl_state().items()}
    torch.save(state, tmp_path / "compiled.pt")
    assert load_sae(tmp_path / "compiled.pt").width == K
    topk = dl_state()
    topk["b_dec"] = topk.pop("bias")
    topk["k"] = torch.tensor(2)
    torch.save(topk, tmp_path / "topk.pt")
    _, info = load_sae(tmp_path / "topk.pt", return_info=True)
    assert (info["activation"], info["k"], info["certifiable"]) == ("topk", 2, False)


def test_dictionary_learning_rejects_pickled_module_and_gated(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(ValueError, match="state dict"):
        load_sae(tmp_path / "module.pt")
    gated = dl_state()
    gated["r_mag"] = torch.zeros(K)
    torch.save(gated, tmp_path / "gated.pt")
    with pytest.raises(ValueError, match="r_mag"):
        load_sae(tmp_path / "gated.pt")


# --------------------------------------------------------------------------- sparsify


def write_sparsify(path, seed: int = 4, k: int = 3, **cfg_fields) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = {
        "encoder.weight": torch.randn(K, D, generator=g),
        "encoder.bias": 0.3 * torch.randn(K, generator=g),
        "W_dec": torch.randn(K, D, generator=g),
        "b_dec": torch.randn(D, generator=g),
    }
    path.mkdir(parents=True, exist_ok=True)
    save_file(t, str(path / "sae.safetensors"))
    cfg = {"activation": "topk", "expansion_factor": 32, "normalize_decoder": True,
           "num_latents": K, "k": k, "multi_topk": False, "skip_connection": False,
           "transcode": False, "d_in": D}  # fmt: skip
    cfg.update(cfg_fields)
    (path / "cfg.json").write_text(json.dumps(cfg))
    return t


def test_sparsify_loads_as_topk_not_certifiable(tmp_path, X):
    t = {k: v.double() for k, v in write_sparsify(tmp_path / "sp").items()}
    sae, info = load_sae(tmp_path / "sp", return_info=True)
    assert (info["format"], info["activation"], info["k"]) == ("sparsify", "topk", 3)
    assert info["certifiable"] is False
    pre = torch.relu(
        F.linear(torch.from_numpy(X) - t["b_dec"], t["encoder.weight"], t["encoder.bias"])
    )
    np.testing.assert_allclose(sae.encode(X), pre.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("fields", "match"),
    [({"transcode": True}, "transcode"), ({"skip_connection": True}, "W_skip"),
     ({"num_latents": K + 1}, "num_latents")],
)  # fmt: skip
def test_sparsify_unsupported_raise(tmp_path, fields, match):
    write_sparsify(tmp_path / "sp", **fields)
    with pytest.raises(ValueError, match=match):
        load_sae(tmp_path / "sp")


# --------------------------------------------------------------------------- bad inputs


def test_missing_path_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sae(tmp_path / "nope")


def test_saelens_dir_without_cfg_raises(tmp_path):
    (tmp_path / "s").mkdir()
    save_file(raw_tensors(), str(tmp_path / "s" / "sae_weights.safetensors"))
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        load_sae(tmp_path / "s")


def test_unknown_directory_and_suffix_raise(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"readme\.txt"):
        load_sae(tmp_path / "d")
    (tmp_path / "w.bin").write_bytes(b"\0")
    with pytest.raises(ValueError, match=r"w\.bin.*suffix '\.bin'"):
        load_sae(tmp_path / "w.bin")


def test_corrupt_files_raise_value_error(tmp_path):
    write_saelens(tmp_path / "s", raw_tensors())
    (tmp_path / "s" / "sae_weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="safetensors"):
        load_sae(tmp_path / "s")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"bad\.npz"):
        load_sae(tmp_path / "bad.npz")
    (tmp_path / "trunc.npz").write_bytes(b"PK\x03\x04truncated zip")
    with pytest.raises(ValueError, match=r"trunc\.npz"):
        load_sae(tmp_path / "trunc.npz")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"bad\.pt"):
        load_sae(tmp_path / "bad.pt")
    (tmp_path / "c").mkdir()
    save_file(raw_tensors(), str(tmp_path / "c" / "sae_weights.safetensors"))
    (tmp_path / "c" / "cfg.json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        load_sae(tmp_path / "c")


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04", b"\x80\x02"])
def test_empty_or_truncated_ae_pt_is_a_value_error(tmp_path, content):
    """Issue 12: an empty ae.pt raised an IndexError while the message was being built."""
    (tmp_path / "ae.pt").write_bytes(content)
    for target in (tmp_path / "ae.pt", tmp_path):
        with pytest.raises(ValueError, match=r"ae\.pt") as err:
            load_sae(target)
        assert "\n" not in str(err.value)


def test_cli_empty_ae_pt_is_one_line_exit_2(tmp_path, capsys):
    from convexdict.cli import main

    (tmp_path / "ae.pt").write_bytes(b"")
    code = main(["compare", str(tmp_path / "ae.pt"), "toy:superposition_2d", "--lam", "0.3"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "ae.pt" in err


@pytest.mark.parametrize("bad", [123, None, 1.5])
def test_load_sae_non_path_names_the_argument(bad):
    with pytest.raises(ValueError, match="'path'"):
        load_sae(bad)


@pytest.mark.parametrize("name", ["s", "w.npz"])
def test_saved_files_get_umask_permissions_and_no_temporaries(tmp_path, name):
    """Issue 12: atomic writes went through mkstemp and left mode 0600."""
    old = os.umask(0o022)
    try:
        save_sae(random_sae(), tmp_path / name)
    finally:
        os.umask(old)
    files = [tmp_path / name] if name.endswith(".npz") else list((tmp_path / name).iterdir())
    assert files and not [f for f in files if f.name.endswith(".tmp")]
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o666 & ~0o022, f


def test_npz_missing_key_wrong_shape_and_nan(tmp_path):
    sae = random_sae()
    arrays = {"W_enc": sae.W_enc, "b_enc": sae.b_enc, "W_dec": sae.W_dec}
    np.savez(tmp_path / "a.npz", **arrays)
    with pytest.raises(ValueError, match=r"a\.npz.*'b_dec'.*found keys"):
        load_sae(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", **arrays, b_dec=np.zeros(D + 1))
    with pytest.raises(ValueError, match=rf"'b_dec' of shape \({D},\); found shape \({D + 1},\)"):
        load_sae(tmp_path / "b.npz")
    bad = sae.W_dec.copy()
    bad[0, 0] = np.nan
    np.savez(tmp_path / "c.npz", **{**arrays, "W_dec": bad}, b_dec=sae.b_dec)
    with pytest.raises(ValueError, match="NaN"):
        load_sae(tmp_path / "c.npz")


# --------------------------------------------------------------------------- loss units


def test_saelens_loss_conversion(X):
    sae, c = random_sae(5), 0.3
    x = torch.from_numpy(X)
    W_enc, b_enc, W_dec, b_dec = (torch.from_numpy(np.array(a)) for a in
                                  (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec))  # fmt: skip
    feats = torch.relu(x @ W_enc + b_enc)
    out = feats @ W_dec + b_dec
    # SAELens TrainingSAE.training_forward_pass and StandardTrainingSAE.calculate_aux_loss
    mse_loss = F.mse_loss(out, x, reduction="none").sum(dim=-1).mean()
    l1_loss = (c * (feats * W_dec.norm(dim=1)).norm(p=1, dim=-1)).mean()
    terms = saelens_to_canonical(mse_loss.item(), l1_loss.item(), l1_coefficient=c)
    ref = sae_loss_terms(sae, X, c / 2)
    assert terms.reconstruction == pytest.approx(ref.reconstruction, rel=1e-12)
    assert terms.penalty == pytest.approx(ref.penalty, rel=1e-12)
    assert terms.total == pytest.approx((mse_loss + l1_loss).item() / 2, rel=1e-12)
    other = saelens_to_canonical(mse_loss.item(), l1_loss.item(), l1_coefficient=c, lam=0.7)
    assert other.penalty == pytest.approx(sae_loss_terms(sae, X, 0.7).penalty, rel=1e-12)


def test_saelens_loss_conversion_with_input_scaling(tmp_path, X):
    t, s, c = raw_tensors(), 2.5, 0.3
    write_saelens(tmp_path / "s", t, normalize_activations="expected_average_only_in")
    sae = load_sae(tmp_path / "s", norm_scaling_factor=s)
    sae_in = s * torch.from_numpy(X)  # what SAELens trains on
    feats, out = saelens_forward(t, sae_in, True)
    mse_loss = F.mse_loss(out, sae_in, reduction="none").sum(dim=-1).mean()
    l1_loss = (c * (feats * t["W_dec"].double().norm(dim=1)).norm(p=1, dim=-1)).mean()
    terms = saelens_to_canonical(
        mse_loss.item(), l1_loss.item(), l1_coefficient=c, norm_scaling_factor=s
    )
    ref = sae_loss_terms(sae, X, c / (2 * s))
    assert terms.reconstruction == pytest.approx(ref.reconstruction, rel=1e-10)
    assert terms.penalty == pytest.approx(ref.penalty, rel=1e-10)
    assert terms.total == pytest.approx((mse_loss + l1_loss).item() / (2 * s * s), rel=1e-10)


def test_dictionary_learning_loss_conversion(tmp_path, X):
    state, p = dl_state(), 0.2
    torch.save(state, tmp_path / "ae.pt")
    sae = load_sae(tmp_path / "ae.pt")
    s = {k: v.double() for k, v in state.items()}
    x = torch.from_numpy(X)
    f = torch.relu(F.linear(x - s["bias"], s["encoder.weight"], s["encoder.bias"]))
    x_hat = F.linear(f, s["decoder.weight"]) + s["bias"]
    # dictionary_learning StandardTrainer.loss
    recon_loss = (x - x_hat).pow(2).sum(dim=-1).mean()
    l1_loss = f.norm(p=1, dim=-1).mean()
    loss = recon_loss + p * l1_loss
    terms = dictionary_learning_to_canonical(recon_loss.item(), l1_loss.item(), l1_penalty=p)
    ref = sae_loss_terms(sae, X, p / 2)
    assert terms.reconstruction == pytest.approx(ref.reconstruction, rel=1e-12)
    assert terms.penalty == pytest.approx(ref.penalty, rel=1e-12)
    assert terms.total == pytest.approx(loss.item() / 2, rel=1e-12)


@pytest.mark.parametrize("k", [K, 3])
def test_sparsify_fvu_conversion(tmp_path, X, k):
    t = {key: v.double() for key, v in write_sparsify(tmp_path / "sp", k=k).items()}
    sae = load_sae(tmp_path / "sp")
    x = torch.from_numpy(X)
    # sparsify SparseCoder.forward: topk of relu pre-activations, FVU over the batch
    pre = torch.relu(F.linear(x - t["b_dec"], t["encoder.weight"], t["encoder.bias"]))
    acts, idx = pre.topk(k, sorted=False)
    out = (torch.zeros_like(pre).scatter(-1, idx, acts)) @ t["W_dec"] + t["b_dec"]
    tv = (x - x.mean(0)).pow(2).sum()
    fvu = ((x - out).pow(2).sum() / tv).item()
    assert total_variance(X) == pytest.approx(tv.item(), rel=1e-12)
    terms = sparsify_to_canonical(fvu, total_variance=total_variance(X), n_samples=N)
    expected = 0.5 * float(((x - out) ** 2).sum()) / N
    assert terms.reconstruction == pytest.approx(expected, rel=1e-12)
    assert terms.penalty == 0.0
    if k == K:  # TopK with k = K is the ReLU SAE itself
        assert terms.reconstruction == pytest.approx(
            sae_loss_terms(sae, X, 0.0).reconstruction, rel=1e-12
        )


def test_to_canonical_loss_dispatches():
    assert to_canonical_loss(
        {"mse_loss": 0.5, "l1_loss": 0.2}, source="saelens", l1_coefficient=2.0
    ) == saelens_to_canonical(0.5, 0.2, l1_coefficient=2.0)
    assert to_canonical_loss(
        {"mse_loss": 0.5, "sparsity_loss": 0.2}, source="dictionary_learning", l1_penalty=2.0
    ) == dictionary_learning_to_canonical(0.5, 0.2, l1_penalty=2.0)
    assert to_canonical_loss(
        {"fvu": 0.1}, source="sparsify", total_variance=4.0, n_samples=2
    ).reconstruction == pytest.approx(0.1)
    with pytest.raises(ValueError, match="'source'"):
        to_canonical_loss({"mse_loss": 1.0}, source="sklearn")
    with pytest.raises(ValueError, match="l1_coefficient"):
        saelens_to_canonical(1.0, l1_coefficient=0.0)


def test_save_through_a_file_is_a_value_error(tmp_path):
    (tmp_path / "f").write_text("x")
    for target in (tmp_path / "f" / "sae", tmp_path / "f" / "deep" / "w.npz"):
        with pytest.raises(ValueError, match="in the way") as err:
            save_sae(random_sae(), target)
        assert str(target) in str(err.value)


def test_extreme_norm_scaling_factor_is_a_value_error(tmp_path):
    write_saelens(tmp_path / "s", raw_tensors(), normalize_activations="expected_average_only_in")
    with pytest.raises(ValueError, match="'norm_scaling_factor'"):
        load_sae(tmp_path / "s", norm_scaling_factor=1.7e308)
