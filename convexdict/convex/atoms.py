"""Realizable activation vectors: the affine frame of the data and the vertex set E0.

THEORY section 2: latent ``u`` has activation ``a = relu(Xt @ u)``; the normalised
activations ``e = a / sum(a)`` of hyperplanes through ``r`` affinely independent points
(both orientations) are the vertices ``E0`` of the realizable set, where ``r`` is the
affine dimension of the data. Everything here works in the reduced coordinates of an
:class:`AffineFrame` and lifts hyperplanes back to the input space to build SAEs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from convexdict_solvers.dedup import first_unique_rows
from convexdict_solvers.pricing.exact import (
    activations,
    count_candidates,
    hyperplanes_through,
    subset_batches,
)

from convexdict._validation import check_matrix

AFFINE_RTOL = 1e-12
MAX_ENUMERATED_ATOMS = 2_000_000
#: Exact pricing refuses data needing more sweep events than this on the CPU
#: (``convexdict_solvers.pricing.exact.sweep_cost``); certify, lam_max and dual_bound share it.
MAX_SWEEP_EVENTS = 4_000_000_000


@dataclass(frozen=True)
class AffineFrame:
    """Coordinates of the data's affine hull, centred and scaled to unit maximum norm.

    ``Y = (X - origin) @ basis / scale`` with ``basis (d, r)`` orthonormal. Directions whose
    singular value is below ``AFFINE_RTOL`` times the largest are treated as exactly
    absent (data that are degenerate up to rounding).

    Attributes
    ----------
    origin : ndarray of shape (d,)
    basis : ndarray of shape (d, r)
    scale : float
    """

    origin: np.ndarray
    basis: np.ndarray
    scale: float

    @property
    def rank(self) -> int:
        """Affine dimension ``r`` of the data."""
        return int(self.basis.shape[1])

    def coords(self, X: np.ndarray) -> np.ndarray:
        """Reduced coordinates ``(N, r)`` of points ``X (N, d)``."""
        return (X - self.origin) @ self.basis / self.scale

    def lift(self, U: np.ndarray) -> np.ndarray:
        """Hyperplanes ``U (m, r+1)`` on ``(y, 1)`` as hyperplanes ``(m, d+1)`` on ``(x, 1)``.

        ``u . (y, 1) == u_full . (x, 1)`` for ``y = coords(x)``.
        """
        normal = U[:, :-1] @ self.basis.T / self.scale
        offset = U[:, -1] - normal @ self.origin
        return np.hstack([normal, offset[:, None]])


def affine_frame(X: np.ndarray) -> AffineFrame:
    """The :class:`AffineFrame` of ``X (N, d)``."""
    X = check_matrix("X", X)
    origin = X.mean(axis=0)
    centred = X - origin
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return AffineFrame(origin, np.zeros((X.shape[1], 0)), 1.0)
    r = int(np.sum(s > AFFINE_RTOL * s[0]))
    basis = vt[:r].T
    scale = float(np.linalg.norm(centred @ basis, axis=1).max())
    return AffineFrame(origin, basis, scale)


@dataclass(frozen=True)
class AtomSet:
    """Candidate atoms: hyperplanes and their normalised activations.

    Attributes
    ----------
    hyperplanes : ndarray of shape (m, r + 1)
        In reduced coordinates (acting on ``(y, 1)``).
    E : ndarray of shape (m, N)
        Normalised activations (rows sum to 1).
    """

    hyperplanes: np.ndarray
    E: np.ndarray

    def __len__(self) -> int:
        return int(self.E.shape[0])


def atoms_from_hyperplanes(Y: np.ndarray, U: np.ndarray) -> AtomSet:
    """Normalised activations of hyperplanes ``U (m, r+1)`` on ``Y (N, r)``; drops
    hyperplanes with no active point and duplicate activation vectors."""
    if Y.shape[1] == 0:
        n = Y.shape[0]
        return AtomSet(np.ones((1, 1)), np.full((1, n), 1.0 / n))
    A = activations(Y, U)
    total = A.sum(axis=1)
    keep = total > 0
    U, A, total = U[keep], A[keep], total[keep]
    E = A / total[:, None]
    first = first_unique_rows(E)
    return AtomSet(U[first], E[first])


def merge_atoms(a: AtomSet, b: AtomSet) -> AtomSet:
    """Union of two atom sets without duplicate activation vectors (``a``'s order first)."""
    E = np.vstack([a.E, b.E])
    U = np.vstack([a.hyperplanes, b.hyperplanes])
    first = first_unique_rows(E)
    return AtomSet(U[first], E[first])


def estimate_n_atoms(n_samples: int, rank: int) -> int:
    """Upper bound ``2 C(N, r)`` on ``|E0|`` before enumeration."""
    return count_candidates(n_samples, rank)


def enumerate_atoms(Y: np.ndarray, *, max_atoms: int = MAX_ENUMERATED_ATOMS) -> AtomSet:
    """All of ``E0`` for reduced coordinates ``Y (N, r)``, deduplicated.

    Raises
    ------
    ValueError
        If ``2 C(N, r)`` exceeds ``max_atoms``.
    """
    n, r = Y.shape
    if r == 0:
        return atoms_from_hyperplanes(Y, np.ones((1, 1)))
    estimate = estimate_n_atoms(n, r)
    if estimate > max_atoms:
        raise ValueError(
            f"Enumerating E0 needs up to {estimate:,} atoms for N={n} points of affine "
            f"dimension {r} (limit max_atoms={max_atoms:,}). Use column generation "
            "(method='colgen'), or convexdict.joint_bound for a bound at any size."
        )
    planes = []
    for subsets in subset_batches(n, r, 100_000):
        U, ok = hyperplanes_through(Y, subsets)
        planes += [U[ok], -U[ok]]
    U = np.vstack(planes) if planes else np.empty((0, r + 1))
    atoms = atoms_from_hyperplanes(Y, U)
    return atoms
