import numpy as np
import pytest
from conftest import random_sae

from convexdict import SAE, sae_loss, sae_loss_terms


def test_loss_known_answer():
    # One latent on the x-axis, decoder row of norm 2.
    sae = SAE(np.array([[1.0], [0.0]]), np.array([0.0]), np.array([[2.0, 0.0]]), np.zeros(2))
    X = np.array([[1.0, 0.0], [-1.0, 1.0]])
    # sample 1: z = 1, xhat = (2, 0), err = 1/2 * 1 = 0.5, penalty = lam * 2 * 1
    # sample 2: z = 0, xhat = 0, err = 1/2 * 2 = 1.0
    lam = 0.25
    expected = (0.5 + 0.25 * 2 + 1.0) / 2
    assert sae_loss(sae, X, lam) == pytest.approx(expected, rel=1e-15)
    terms = sae_loss_terms(sae, X, lam)
    assert terms.reconstruction == pytest.approx(0.75)
    assert terms.penalty == pytest.approx(0.25)


def test_scale_invariance_and_normalized(rng):
    sae = random_sae(rng, 3, 5)
    X = rng.normal(size=(20, 3))
    s = np.array([0.5, 2.0, 3.0, 1.0, 0.1])
    scaled = SAE(sae.W_enc * s, sae.b_enc * s, sae.W_dec / s[:, None], sae.b_dec)
    assert sae_loss(scaled, X, 0.3) == pytest.approx(sae_loss(sae, X, 0.3), rel=1e-12)
    unit = sae.normalized()
    np.testing.assert_allclose(unit.decoder_norms(), 1.0)
    assert sae_loss(unit, X, 0.3) == pytest.approx(sae_loss(sae, X, 0.3), rel=1e-12)


def test_apply_b_dec_to_input_is_same_class(rng):
    sae = random_sae(rng, 3, 4)
    X = rng.normal(size=(10, 3))
    codes_saelens = np.maximum((X - sae.b_dec) @ sae.W_enc + sae.b_enc, 0)
    folded = SAE(sae.W_enc, sae.b_enc - sae.b_dec @ sae.W_enc, sae.W_dec, sae.b_dec)
    np.testing.assert_allclose(folded.encode(X), codes_saelens, atol=1e-12)


def test_padding_keeps_function(rng):
    sae = random_sae(rng, 2, 3)
    X = rng.normal(size=(15, 2))
    wide = sae.padded(7)
    assert wide.width == 7
    assert sae_loss(wide, X, 0.2) == sae_loss(sae, X, 0.2)


def test_weights_are_read_only(rng):
    sae = random_sae(rng, 2, 2)
    with pytest.raises(ValueError):
        sae.W_enc[0, 0] = 1.0


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(W_enc=np.zeros(3)), "W_enc"),
        (dict(b_enc=np.zeros(3)), "b_enc"),
        (dict(W_dec=np.zeros((2, 3))), "W_dec"),
        (dict(b_dec=np.zeros(3)), "b_dec"),
        (dict(W_enc=np.full((2, 2), np.nan)), "W_enc"),
    ],
)
def test_shape_validation_names_argument(kwargs, needle):
    base = dict(
        W_enc=np.zeros((2, 2)), b_enc=np.zeros(2), W_dec=np.zeros((2, 2)), b_dec=np.zeros(2)
    )
    base.update(kwargs)
    with pytest.raises(ValueError, match=needle):
        SAE(**base)


def test_loss_rejects_bad_input(rng):
    sae = random_sae(rng, 2, 2)
    with pytest.raises(ValueError, match="'X'.*3 columns|'X'.*2 columns"):
        sae_loss(sae, np.zeros((4, 3)), 0.1)
    with pytest.raises(ValueError, match="'lam'.*Got -1"):
        sae_loss(sae, np.zeros((4, 2)), -1)
    with pytest.raises(ValueError, match="finite"):
        sae_loss(sae, np.array([[np.inf, 0.0]]), 0.1)
