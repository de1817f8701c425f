"""Certified global optima of the canonical SAE objective (THEORY sections 3 and 4).

:func:`certify` is a short pipeline of named stages:

1. **check inputs** (:func:`_check_inputs`): validate once, at the public boundary;
2. **internal units** (:class:`~convexdict.units.Units`): scale the data and ``lam`` by
   powers of two to unit RMS (exact), so that no solver threshold depends on the user's
   units;
3. **solve the master** (:func:`solve_master`): the group lasso (P) over ``E0``, directly
   or by column generation with exact pricing, within the time budget;
4. **refine** (:func:`refine`): candidate simplifications of the solver's model (a sparser
   support, a Newton polish, merged parallel latents), each kept only if its recomputed
   loss is not worse (:func:`_accept`);
5. **verify** (:func:`verify_candidates`): in the user's units, ``upper_bound`` is the loss of the
   explicit model recomputed from its weights and ``lower_bound`` the dual value of its
   residual, centred and scaled into the dual feasible set by *exact* pricing over all of
   ``E0``; ``certified`` is :func:`~convexdict.tolerance.within_tol` of the two;
6. **fit to width** (:func:`_fit_to_width`): pad to a wider ``width``, or run the
   fixed-width branch and bound below ``K*`` (:mod:`convexdict.fixed_width.search`).

The solver's status and objective are recorded for information only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from convexdict_solvers.group_lasso.cvxpy_solve import SOLVERS
from convexdict_solvers.pricing.exact import count_candidates

from convexdict._validation import check_choice, check_int, check_matrix, check_positive
from convexdict.convex.atoms import affine_frame
from convexdict.convex.certificate import Certificate
from convexdict.convex.master import (
    Options,
    check_size,
    lam_max_internal,
    mean_only,
    solve_master,
    torch_device,
    warm_atoms,
)
from convexdict.convex.refine import candidate_of, refine, verify_candidates
from convexdict.convex.task import Task, make_task
from convexdict.models.sae import SAE
from convexdict.tolerance import within_tol
from convexdict.units import Units

__all__ = ["certify", "certify_width"]


def _check_inputs(X, lam, kw: dict[str, Any]) -> tuple[Task, Options, float]:
    X = check_matrix("X", X)
    lam = check_positive("lam", lam)
    width = kw["width"]
    if width is not None:
        width = check_int("width", width, minimum=0)
    time_limit = kw["time_limit"]
    if time_limit is not None:
        time_limit = check_positive("time_limit", time_limit)
    start = time.perf_counter()
    options = Options(
        width=width,
        solver=check_choice("solver", kw["solver"], tuple(SOLVERS)),
        tol=check_positive("tol", kw["tol"]),
        method=check_choice("method", kw["method"], ("auto", "colgen", "direct")),
        max_rounds=check_int("max_rounds", kw["max_rounds"], minimum=1),
        atoms_per_round=check_int("atoms_per_round", kw["atoms_per_round"], minimum=1),
        progress=bool(kw["progress"]),
        sparsify=bool(kw["sparsify"]),
        backend=check_choice("backend", kw["backend"], ("cvxpy", "torch")),
        device=kw["device"],
        deadline=math.inf if time_limit is None else start + time_limit,
        time_limit=time_limit,
        max_nodes=check_int("max_nodes", kw["max_nodes"], minimum=1),
    )
    return make_task(X, lam, kw["target"], kw["targets"]), options, start


def certify(
    X: np.ndarray,
    lam: float,
    *,
    width: int | None = None,
    solver: str = "clarabel",
    tol: float = 1e-6,
    method: str = "auto",
    max_rounds: int = 200,
    atoms_per_round: int = 50,
    progress: bool = False,
    target: np.ndarray | None = None,
    targets: list[np.ndarray] | None = None,
    warm_start: Certificate | None = None,
    sparsify: bool = True,
    backend: str = "cvxpy",
    device: str | None = None,
    time_limit: float | None = 60.0,
    max_nodes: int = 2_000_000,
    starts: Sequence[SAE] | None = None,
) -> Certificate:
    """Certified global optimum of the canonical SAE objective.

    Parameters
    ----------
    X : ndarray of shape (N, d)
        Data, one sample per row (the encoder's input). Real-valued and finite.
    lam : float
        L1 penalty (> 0). Any ``lam >= lam_max`` is valid: the optimum is then the mean.
    width : int, optional
        Requested width ``K``. ``None`` returns the optimal SAE at width ``K*``; ``K >= K*``
        pads it with dead latents; ``K < K*`` runs the fixed-width branch and bound over
        activation patterns (:mod:`convexdict.fixed_width.search`; SAEs only): ``lower_bound`` then
        bounds every SAE of width ``<= K``, ``sae`` is the best width-``K`` SAE found and
        ``certified`` says whether they meet within ``tol``; ``search`` holds its statistics.
        Explicit width-``K`` incumbents (:mod:`convexdict.fixed_width.width_incumbents`) always run;
        above the branch and bound's pattern limit they are the answer: ``sae`` is the
        best one, ``upper_bound`` its recomputed loss, ``lower_bound`` the wide bound and
        ``search["budget_exhausted"] == "patterns"`` (the bracket of the width-``K``
        optimum, printed with its relative width by :meth:`Certificate.summary`).
    solver : {"clarabel", "scs"}
        CVXPY solver for the group lasso (the other is the fallback on failure).
    tol : float
        Relative gap tolerance: ``certified`` is ``upper - lower <= tol * upper``
        (:func:`convexdict.within_tol`), the same verdict in every unit of the data.
    method : {"auto", "colgen", "direct"}
        Column generation with exact pricing, or one solve over all of ``E0``.
    max_rounds, atoms_per_round : int
        Column-generation limits.
    progress : bool
        Show a progress display (with a time estimate per pricing round).
    target : ndarray of shape (N, d_out), optional
        Certify a **transcoder** (encode ``X``, reconstruct ``target``).
    targets : list of ndarray of shape (N, d_l), optional
        Certify a **crosscoder** (one decoder per target, penalty summed over layers).
    warm_start : Certificate, optional
        A certificate on the same ``X`` (e.g. at a nearby ``lam``): its active atoms seed
        column generation.
    sparsify : bool
        Look for a sparser optimal support (fewer latents); kept only when its recomputed
        loss is not worse than the solver's solution by more than a tenth of ``tol``.
    backend : {"cvxpy", "torch"}
        ``"torch"`` runs column generation on a torch device (FISTA master, torch
        pricing) and, with ``width``, the branch and bound's leaf relaxations on it (batched
        FISTA). Either way the bounds are verified in float64 on the host (exact numpy
        pricing; the leaves' dual bounds by the numpy check).
    device : str, optional
        Torch device for ``backend="torch"`` (default: ``"cuda"`` when available; without
        one, the leaves stay in numpy).
    time_limit : float or None
        Seconds for the whole call (column generation, branch and bound, incumbents);
        None for no limit. On expiry the bounds returned are still valid,
        ``certified`` is decided by them, and ``search["budget_exhausted"] == "time"``.
    max_nodes : int
        Relaxations the fixed-width branch and bound may solve.
    starts : sequence of SAE, optional
        Width-``K`` SAEs (e.g. trained ones) offered to the fixed-width search as first
        upper bounds.

    Returns
    -------
    Certificate
        ``sae`` is an :class:`~convexdict.SAE`, a :class:`~convexdict.Transcoder` or a
        :class:`~convexdict.Crosscoder`, in the user's units.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.2]])
    >>> cert = certify(X, 0.1)
    >>> cert.certified, cert.relative_gap <= 1e-6
    (True, True)
    """
    from threadpoolctl import threadpool_limits

    kw = dict(locals())
    task, options, start = _check_inputs(X, lam, kw)
    # Small dense linear algebra (QR of a few hundred atoms, pricing batches) runs far
    # faster single-threaded than with oversubscribed BLAS threads on busy machines.
    with threadpool_limits(limits=1, user_api="blas"):
        return _pipeline(task, options, start, warm_start, starts)


def _pipeline(task: Task, opts: Options, start: float, warm_start, starts) -> Certificate:
    units = Units.of(task.X, task.T)
    inner = task.scaled(units)
    frame = affine_frame(inner.X)
    n, r = inner.X.shape[0], frame.rank
    n_atoms = count_candidates(n, r)
    method = opts.method
    if method == "auto":
        method = "direct" if n_atoms <= 2_000 else "colgen"
    check_size(n, r, n_atoms, method, opts)
    digest = _data_sha256(task)
    if warm_start is not None and warm_start.data_sha256 == digest:
        lam_max = warm_start.lam_max / units.t  # the same data: priced once along a path
    else:
        lam_max = lam_max_internal(inner, frame, r)
    if inner.lam >= (lam_max if lam_max == lam_max else inner.lam_max_bound()):
        master = mean_only(inner, frame, opts)  # lam >= lam_max: verified below like any
    else:
        initial = warm_atoms(inner, frame, warm_start, units, opts)
        master = solve_master(inner, frame, method, opts, initial)
    plain = candidate_of(inner, frame, master.U, master.sol)
    candidates = refine(inner, frame, master, plain, opts)
    t0 = time.perf_counter()
    user_frame = affine_frame(task.X)
    verified = verify_candidates(task, units, candidates, opts.tol, user_frame)
    t_verify = time.perf_counter() - t0
    best, dual, dual_point = verified
    lower = dual.value
    cert = Certificate(
        lower_bound=lower,
        upper_bound=best.loss,
        gap=best.loss - lower,
        certified=within_tol(best.loss, lower, opts.tol),
        sae=best.model,
        width_needed=best.k,
        joint_bound=inner.joint_bound() * units.loss,  # exact: a power of four
        n_atoms=n_atoms,
        lam=task.lam,
        tol=opts.tol,
        width=opts.width,
        method=master.method,
        solver=master.sol.solver,
        status="",
        message="",
        kind=task.kind,
        optimum_sae=best.model,
        n_samples=n,
        d=task.X.shape[1],
        rank=r,
        n_active_atoms=len(master.E) if master.sol.status != "failed" else 0,
        lam_max=lam_max * units.t,
        active_hyperplanes=best.hyperplanes,
        dual_point=dual_point,
        max_price_ratio=dual.max_price * dual.scale / task.lam if dual.scale else 0.0,
        pricing_method=dual.method,
        solver_statuses=master.statuses,
        rounds=master.rounds,
        time_master=master.t_master,
        time_pricing=master.t_pricing,
        time_verify=t_verify,
        search={"budget_exhausted": master.budget},
        data_sha256=digest,
        frame=user_frame,
    )
    cert = _fit_to_width(cert, task, units, inner, opts, best, starts, master)
    if cert.certified and r < task.X.shape[1]:
        _exact_gate(cert, task)
    cert.status = "certified" if cert.certified else "not_certified"
    cert.time_total = time.perf_counter() - start
    return cert


def _data_sha256(task: Task) -> str:
    """Hash of the user's data for the certificate file: ``X``, then each target layer."""
    from convexdict.convex.certificate_file import data_sha256

    if task.kind == "sae":
        return data_sha256(task.X)
    groups = task.groups or [slice(None)]
    return data_sha256(task.X, [task.T[:, g] for g in groups])


def _exact_gate(cert: Certificate, task: Task) -> None:
    """Near-degenerate data: confirm a certified claim by exact verification.

    The affine frame drops directions whose singular value is below ``1e-12`` of the
    largest. When the data are *exactly* in that lower-dimensional hull this is exact;
    when they are only within ``1e-12`` of it (e.g. points computed as ``t * u`` in floating
    point), the true ``E0`` has more vertices and the dual point may violate them slightly
    (CONTRACTS: the finder must then not claim certified on its float decisions). The
    certificate is then checked by the independent exact verifier
    (:mod:`convexdict.verification`). When it finds an atom with ``||R^T e|| = rho lam``,
    ``rho > 1``, the dual point is scaled down by ``rho`` (plus a growing margin) and checked
    again, a few times: a scaled dual point is feasible for a smaller set, never a larger
    one, so each accepted bound is exactly verified. If none verifies, ``certified`` is
    withdrawn and the lower bound falls back to the joint bound (valid without ``E0``).
    """
    from convexdict.verification import exact_affine_rank

    exact_rank = exact_affine_rank(task.X)
    if exact_rank <= cert.rank:
        return
    Tc = task.T - task.T.mean(axis=0)
    n = task.X.shape[0]
    check = _verify_in_memory(cert, task)
    margin = 1e-10
    for _ in range(8):
        rho = check.details.get("violation_ratio")
        if check.verified or rho is None:
            break
        R = cert.dual_point / (rho * (1.0 + margin))
        cert.dual_point = R
        cert.lower_bound = (float(np.sum(R * Tc)) - 0.5 * float(np.sum(R * R))) / n
        cert.gap = cert.upper_bound - cert.lower_bound
        cert.certified = within_tol(cert.upper_bound, cert.lower_bound, cert.tol)
        check = _verify_in_memory(cert, task)
        margin *= 10.0
    cert.search = {**(cert.search or {}), "exact_rank": exact_rank, "exact_check": check.status}
    if check.verified:
        cert.message += (f" (data within 1e-12 of a {cert.rank}-dimensional subspace, exact "
                         f"affine dimension {exact_rank}: certificate verified exactly)")
        return
    cert.certified = False
    cert.lower_bound = cert.joint_bound
    cert.gap = cert.upper_bound - cert.lower_bound
    cert.message = (
        f"not certified: the data lie within 1e-12 of a {cert.rank}-dimensional affine "
        f"subspace but not on it (exact affine dimension {exact_rank}); exact verification "
        f"says {check.status} ({check.reason}). The lower bound is the joint bound. "
        "Project the data onto the subspace to certify there."
    )


def _verify_in_memory(cert: Certificate, task: Task):
    """:func:`convexdict.verify` of ``cert`` on the task's data, through a temporary file."""
    import os
    import tempfile

    from convexdict.verification import verify

    fd, path = tempfile.mkstemp(suffix=".npz")
    os.close(fd)
    try:
        cert.save(path)
        targets = [task.T[:, g] for g in task.groups] if task.kind == "crosscoder" else None
        return verify(path, task.X, target=task.T if task.kind == "transcoder" else None,
                      targets=targets)
    finally:
        os.unlink(path)


def _fit_to_width(cert, task, units, inner, opts, best, starts, master) -> Certificate:
    """Stage 6: pad to ``width >= K*``, or the branch and bound below ``K*``."""
    width, k_star = opts.width, cert.width_needed
    message = "global optimum certified" if cert.certified else "gap above tolerance: not certified"
    if master.budget == "time":
        message += f"; the time budget ({opts.time_limit:g} s) ran out during column generation"
    elif not master.converged and master.sol.status != "failed":
        message += "; column generation stopped before pricing converged"
    if master.sol.status == "failed":
        message = "every solver failed; only the lower bound is valid"
    cert.message = message
    if width is None or width == k_star:
        return cert
    if width > k_star:
        cert.sae = task.padded(best.model, width, k_star)
        return cert
    if task.kind != "sae":
        cert.sae, cert.upper_bound, cert.gap, cert.certified = None, math.inf, math.inf, False
        cert.message = (
            f"width {width} < K* = {k_star}: only the lower bound is known at this width "
            "(fixed-width branch and bound covers SAEs, not transcoders or crosscoders)"
        )
        return cert
    from convexdict.fixed_width.search import fixed_width_result

    remaining = max(opts.deadline - time.perf_counter(), 1e-3) if opts.time_limit else None
    sae, lower, upper, _, _, message, search = fixed_width_result(
        inner.X,
        inner.lam,
        width,
        wide_lower=cert.lower_bound / units.loss,
        wide_optimum=units.model_to_internal(best.model),
        starts=[units.model_to_internal(s) if isinstance(s, SAE) else s for s in starts or []],
        tol=opts.tol,
        time_limit=remaining,
        max_nodes=opts.max_nodes,
        solver=opts.solver,
        progress=opts.progress,
        k_star=k_star,
        device=torch_device(opts) if opts.backend == "torch" else None,
    )
    cert.sae = units.model_to_user(sae)
    if cert.sae is not None:
        upper, _ = task.loss_and_residual(cert.sae)  # recomputed in the user's units
    cert.lower_bound = lower * units.loss  # exact: units.loss is a power of four
    cert.upper_bound = upper
    cert.gap = upper - cert.lower_bound
    cert.certified = cert.sae is not None and within_tol(upper, cert.lower_bound, opts.tol)
    cert.message = message
    search["fixed_width"] = True
    if "joint_bound" in search:  # internal units -> the user's (exact: a power of four)
        search["joint_bound"] = search["joint_bound"] * units.loss
    cert.search = search
    return cert


def certify_width(X: np.ndarray, lam: float, width: int, **kwargs: Any) -> Certificate:
    """``certify(X, lam, width=width, **kwargs)``: the certified optimum at a fixed width.

    Below ``K*`` this runs the branch and bound of :mod:`convexdict.fixed_width.search`; see
    :func:`certify` for the options (``tol``, ``time_limit``, ``max_nodes``, ``starts``,
    ``progress``, ...).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.2]])
    >>> cert = certify_width(X, 0.05, 1)
    >>> cert.sae.width, cert.lower_bound <= cert.upper_bound
    (1, True)
    """
    return certify(X, lam, width=width, **kwargs)

