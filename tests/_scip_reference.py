"""An independent exact reference for the width-K canonical SAE optimum, via SCIP.

``scip_width_optimum(X, lam, K)`` states

    min over width-K SAEs of  L = (1/N) sum_n [ 1/2 ||x_n - xhat_n||^2
                                              + lam sum_k ||W_dec[k]|| Z[n,k] ]

(THEORY section 1) as a mixed-integer nonconvex (bilinear) program and hands it to SCIP,
which solves it by spatial branch and bound. It shares no code with convexdict's
solvers; ``convexdict.SAE`` / ``convexdict.sae_loss`` are used only to recompute the
loss of SCIP's solution from explicit weights.

Formulation (n = 1..N samples, k = 1..K latents, j = 1..d coordinates)
-----------------------------------------------------------------------
Variables
    v[j,k], c[k]   encoder (free: no bound on encoder weights is claimed or used)
    p[n,k]         pre-activation, p = x_n . v_k + c_k   (free; linear equality)
    a[n,k] >= 0    activation relu(p[n,k])
    z[n,k]         binary: 1 iff latent k is "on" for sample n
    w[k,j]         decoder row k, with  sum_j w[k,j]^2 <= 1   (convex quadratic)
    y[n,k,j]       contribution a[n,k] * w[k,j]              (bilinear equality)
    b[j]           decoder bias
    r[n,j]         residual, r_n = x_n - b - sum_k y[n,k]    (linear equality)
    t              epigraph, t >= 1/2 sum r^2 + lam sum a    (convex quadratic)
Objective: minimise t / N (SCIP needs a linear objective, hence the epigraph t).

ReLU, exactly, with no big-M on the (unbounded) pre-activations:
    a >= p,   a >= 0,   z = 1  =>  a <= p   (indicator constraint),   z = 0  =>  a <= 0.
If z = 1 then a = p >= 0; if z = 0 then a = 0 >= p. Either way a = max(p, 0), and every
a = relu(p) is feasible (z = [p > 0]). "z = 0 => a <= 0" is written as the linear
a <= A_max z with the proven A_max of (B1).

Why the program's optimum equals the width-K SAE optimum
    * Any SAE maps to a feasible point with the same objective: rescale each latent so
      that ||W_dec[k]|| = 1 (W_enc[:,k], b_enc[k] *= s and W_dec[k] /= s leave L
      unchanged, THEORY section 1); then lam ||w_k|| a = lam a. A latent with
      W_dec[k] = 0 is replaced by a dead one (v = 0, c = -1, so a = 0), which changes
      neither the reconstruction nor the penalty. So  min(program) <= min(SAE).
    * Any feasible point is an SAE (W_enc = v, b_enc = c, W_dec = w, b_dec = b) whose
      loss is <= the program's objective, because ||w_k|| <= 1 gives
      lam ||w_k|| a <= lam a. So  min(SAE) <= min(program).
  Relaxing ||w_k|| = 1 to ||w_k|| <= 1 (a convex set) therefore changes nothing.

Redundant constraints and bounds; each holds at every optimum of the program, so adding
it cannot change the optimal value. Let UB = (1/(2N)) ||X - 1 mean(X)^T||_F^2, the
objective of the feasible point "all latents dead, b = mean(X)" (v = 0, c = -1, a = 0,
w = 0, y = 0). Every optimum has t / N <= UB.
    (B1) lam * sum_{n,k} a[n,k] <= t <= N * UB, so every a[n,k] and their sum are
         <= A_max := N * UB / lam.
    (B2) 1/2 sum r^2 <= t <= N * UB, so |r[n,j]| <= sqrt(2 N UB).
    (B3) |w[k,j]| <= 1, implied by sum_j w[k,j]^2 <= 1.
    (B4) Bias stationarity: with everything else fixed the objective is a strictly
         convex quadratic in b, minimised only where sum_n r[n,j] = 0 for every j. Every
         optimum satisfies it, so the linear equality sum_n r[n,:] = 0 is added. It
         gives b = mean(X) - (1/N) sum_{n,k} y[n,k], hence
         |b[j] - mean(X)_j| <= (1/N) sum_{n,k} a[n,k] |w[k,j]| <= A_max / N = UB / lam,
         used as a box on b.
    (B5) t <= N * UB (objective cutoff at a feasible point's value).
    (L)  ||y[n,k]||^2 <= a[n,k]^2 (a second-order cone since a >= 0): y = a w with
         ||w|| <= 1 and a >= 0 implies it at EVERY feasible point, so it is a valid
         (redundant) cut; it strengthens SCIP's relaxation a lot (about 5x faster at
         N = 6, d = 2, K = 2). |y[n,k,j]| <= A_max follows from it and (B1).
    (S)  Optional symmetry breaking (off by default: SCIP's own symmetry handling is
         faster): latents are interchangeable, so some optimum has
         sum_n a[n,1] >= ... >= sum_n a[n,K]. This removes optima but keeps their value.
No bound is put on v, c or p.
"""

from __future__ import annotations

import math
import time

import numpy as np

import convexdict as cd

SOLVED_STATUSES = ("optimal", "gaplimit")


class ScipResult(tuple):
    """``(value, dual_bound, weights)`` plus attributes.

    Unpacks as the 3-tuple ``(value, dual_bound, weights)``: SCIP's best primal objective
    (``inf`` without a solution), SCIP's dual bound, and a dict of float64 arrays
    ``W_enc (d, K), b_enc (K,), W_dec (K, d), b_dec (d,)`` (None without a solution).

    Attributes: ``status`` (SCIP's status string), ``solve_time`` (wall seconds of
    ``optimize``), ``sae`` (the ``cd.SAE`` built from ``weights``, or None), ``loss``
    (``cd.sae_loss`` of that SAE: an honest upper bound on the width-K optimum; ``inf``
    without one), ``gap`` (``(value - dual_bound) / max(1, |value|)``), ``solved``
    (status in :data:`SOLVED_STATUSES` and ``gap <= max(gap_limit, 1e-6)``), ``n_nodes``.

    ``value`` is SCIP's objective, computed at SCIP's feasibility tolerance: it can sit a
    few ``feastol`` below ``loss``. Compare honest quantities with ``loss``.
    """

    def __new__(cls, value, dual_bound, weights, **attrs):
        self = super().__new__(cls, (value, dual_bound, weights))
        for key, val in attrs.items():
            setattr(self, key, val)
        return self

    @property
    def value(self) -> float:
        return self[0]

    @property
    def dual_bound(self) -> float:
        return self[1]

    @property
    def weights(self):
        return self[2]


def zero_sae_loss(X: np.ndarray) -> float:
    """``(1/(2N)) ||X - mean||_F^2``: the loss of the all-dead SAE with ``b_dec = mean(X)``."""
    Xc = X - X.mean(axis=0)
    return 0.5 * float(np.sum(Xc * Xc)) / X.shape[0]


def scip_width_optimum(
    X: np.ndarray,
    lam: float,
    K: int,
    *,
    time_limit: float = 60.0,
    gap_limit: float = 1e-7,
    feastol: float = 1e-8,
    symmetry_breaking: bool = False,
    verbose: bool = False,
) -> ScipResult:
    """SCIP's (primal value, dual bound, weights) for the width-``K`` canonical SAE optimum.

    See the module docstring for the formulation and the proof of every bound.

    Parameters
    ----------
    X : ndarray of shape (N, d)
    lam : float
        L1 weight, > 0.
    K : int
        Width, >= 1.
    time_limit : float
        SCIP time limit in seconds.
    gap_limit : float
        SCIP's relative gap limit (``limits/gap``).
    feastol : float
        SCIP's feasibility tolerance (``numerics/feastol``).
    symmetry_breaking : bool
        Add the (S) ordering constraints.
    """
    from pyscipopt import Model, quicksum

    X = np.asarray(X, dtype=np.float64)
    N, d = X.shape
    if not lam > 0 or K < 1:
        raise ValueError(f"need lam > 0 and K >= 1; got lam={lam}, K={K}")
    mean = X.mean(axis=0)
    ub = zero_sae_loss(X)
    a_max = N * ub / lam  # (B1)
    r_max = math.sqrt(2.0 * N * ub)  # (B2)
    b_rad = ub / lam  # (B4)

    m = Model("sae_width_K")
    if not verbose:
        m.hideOutput()
    m.setParam("limits/time", float(time_limit))
    m.setParam("limits/gap", float(gap_limit))
    m.setParam("numerics/feastol", float(feastol))

    Ns, Ks, ds = range(N), range(K), range(d)
    v = [[m.addVar(f"v_{j}_{k}", lb=None, ub=None) for k in Ks] for j in ds]
    c = [m.addVar(f"c_{k}", lb=None, ub=None) for k in Ks]
    p = [[m.addVar(f"p_{n}_{k}", lb=None, ub=None) for k in Ks] for n in Ns]
    a = [[m.addVar(f"a_{n}_{k}", lb=0.0, ub=a_max) for k in Ks] for n in Ns]  # (B1)
    z = [[m.addVar(f"z_{n}_{k}", vtype="B") for k in Ks] for n in Ns]
    w = [[m.addVar(f"w_{k}_{j}", lb=-1.0, ub=1.0) for j in ds] for k in Ks]  # (B3)
    y = [[[m.addVar(f"y_{n}_{k}_{j}", lb=-a_max, ub=a_max) for j in ds] for k in Ks] for n in Ns]
    b = [m.addVar(f"b_{j}", lb=mean[j] - b_rad, ub=mean[j] + b_rad) for j in ds]  # (B4)
    r = [[m.addVar(f"r_{n}_{j}", lb=-r_max, ub=r_max) for j in ds] for n in Ns]  # (B2)
    t = m.addVar("t", lb=0.0, ub=N * ub)  # (B5)

    for k in Ks:
        m.addCons(quicksum(w[k][j] * w[k][j] for j in ds) <= 1.0, name=f"unit_{k}")
    for n in Ns:
        for k in Ks:
            pre = quicksum(float(X[n, j]) * v[j][k] for j in ds) + c[k]
            m.addCons(p[n][k] == pre, name=f"pre_{n}_{k}")
            m.addCons(a[n][k] >= p[n][k], name=f"relu_ge_{n}_{k}")
            m.addCons(a[n][k] <= a_max * z[n][k], name=f"off_{n}_{k}")  # z = 0 => a = 0
            m.addConsIndicator(a[n][k] - p[n][k] <= 0.0, binvar=z[n][k], name=f"on_{n}_{k}")
            for j in ds:
                m.addCons(y[n][k][j] == a[n][k] * w[k][j], name=f"prod_{n}_{k}_{j}")
            m.addCons(  # (L)
                quicksum(y[n][k][j] * y[n][k][j] for j in ds) <= a[n][k] * a[n][k],
                name=f"cone_{n}_{k}",
            )
        for j in ds:
            m.addCons(
                r[n][j] + b[j] + quicksum(y[n][k][j] for k in Ks) == float(X[n, j]),
                name=f"resid_{n}_{j}",
            )
    for j in ds:  # (B4)
        m.addCons(quicksum(r[n][j] for n in Ns) == 0.0, name=f"bias_stationarity_{j}")
    total_a = quicksum(a[n][k] for n in Ns for k in Ks)
    m.addCons(total_a <= a_max, name="total_activation")  # (B1)
    m.addCons(
        t >= 0.5 * quicksum(r[n][j] * r[n][j] for n in Ns for j in ds) + lam * total_a,
        name="epigraph",
    )
    if symmetry_breaking:  # (S)
        for k in range(K - 1):
            m.addCons(
                quicksum(a[n][k] for n in Ns) >= quicksum(a[n][k + 1] for n in Ns),
                name=f"order_{k}",
            )
    m.setObjective((1.0 / N) * t, "minimize")

    start = time.perf_counter()
    m.optimize()
    wall = time.perf_counter() - start

    status = m.getStatus()
    dual = float(m.getDualbound())
    value, weights, sae, loss = math.inf, None, None, math.inf
    if m.getNSols() > 0:
        sol = m.getBestSol()
        value = float(m.getSolObjVal(sol))
        weights = {
            "W_enc": np.array([[sol[v[j][k]] for k in Ks] for j in ds], dtype=np.float64),
            "b_enc": np.array([sol[c[k]] for k in Ks], dtype=np.float64),
            "W_dec": np.array([[sol[w[k][j]] for j in ds] for k in Ks], dtype=np.float64),
            "b_dec": np.array([sol[b[j]] for j in ds], dtype=np.float64),
        }
        sae = cd.SAE(**weights)
        loss = cd.sae_loss(sae, X, lam)
    gap = (value - dual) / max(1.0, abs(value)) if math.isfinite(value) else math.inf
    return ScipResult(
        value,
        dual,
        weights,
        status=status,
        solve_time=wall,
        sae=sae,
        loss=loss,
        gap=gap,
        solved=status in SOLVED_STATUSES and gap <= max(gap_limit, 1e-6),
        n_nodes=int(m.getNNodes()),
    )
