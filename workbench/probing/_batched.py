"""Fast exact probe fits: many train sets and label sets of one layer at once.

A sweep fits, per layer, one probe per CV fold and per label set (task, control task), plus a
probe on all rows. Both solvers share the work between those problems:

- Ridge: closed form. Per-fold Gram matrices are the full Gram minus the held-out block's, so
  one pass over the data serves every fold and every label set (multi-target solve).
- Logistic (binary, L2, scikit-learn's objective ``C * sum(logloss) + ||w||^2 / 2``, intercept
  unpenalised): one eigendecomposition of the layer's covariance whitens the data for every
  problem, and L-BFGS (scipy's L-BFGS-B with an analytic gradient, diagonally preconditioned)
  solves all problems of the layer at once as matrix products. On raw
  hidden states (outlier dimensions, near-separable classes) scikit-learn's L-BFGS needs hundreds
  of iterations per fit; whitened, about a hundred evaluations serve every fold and label set.

Both reach the same optimum as scikit-learn's ``Ridge`` / ``LogisticRegression`` (tested).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class LinearFits:
    """Weights of ``P`` problems on one layer: ``coef [P, d, t]``, ``intercept [P, t]``."""

    coef: np.ndarray
    intercept: np.ndarray
    n_iter: int = 0
    converged: bool = True
    alpha: np.ndarray | None = None

    def decision(self, X: np.ndarray, problem: int) -> np.ndarray:
        """Scores of rows ``X [n, d]`` under problem ``problem``: ``[n, t]``."""
        return X @ self.coef[problem] + self.intercept[problem]


#: counts [P], means [P, d], centred Grams [P, d, d] (float64), rows centred on the overall mean
#: [n, d] (the data's precision)
Moments = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def ridge_moments(X: np.ndarray, masks: np.ndarray) -> Moments:
    """What ``ridge_fits`` needs of ``X`` for ``masks``, computed once per layer and shared by
    every label set (task, control task)."""
    return _moments(torch.from_numpy(np.ascontiguousarray(X)), masks)


def _moments(X: torch.Tensor, masks: np.ndarray) -> Moments:
    """Counts ``[P]``, means ``[P, d]`` and centred Grams ``[P, d, d]`` (float64) of the rows
    selected by each mask ``[P, n]``, sharing work between complementary masks.

    The Grams are GEMMs in the data's precision (float32 for stored activations, as
    scikit-learn's on float32 data; float64 for float64 input) of rows centred on the overall
    mean first, so the per-mask centring subtracts only small fold-mean shifts and loses
    no precision to hidden states' large constant offsets."""
    work = torch.float64 if X.dtype == torch.float64 else torch.float32
    Xw = X.to(work)
    mu = Xw.mean(dim=0).double()  # torch's cascade summation: float32 is accurate here
    Xc = Xw - mu.to(work)  # [n, d] centred
    masks_t = torch.from_numpy(masks)
    counts = masks_t.sum(dim=1).double()
    sums = masks_t.to(work) @ Xc  # [P, d]
    full = bool(masks.all(axis=0).any()) or masks.sum(axis=1).max() > 0.5 * masks.shape[1]
    grams: list[torch.Tensor] = []
    G_all: torch.Tensor | None = None
    held: dict[int, torch.Tensor] = {}  # the held-out block's Gram of each mask
    if full:
        held_out = ~masks_t
        for p in range(len(masks_t)):
            if held_out[p].any() and int(masks_t[p].sum()) > 0.5 * masks.shape[1]:
                block = Xc[held_out[p]]
                held[p] = (block.T @ block).double()
        blocks = held_out[list(held)] if held else None
        if blocks is not None and bool((blocks.sum(dim=0) == 1).all()):
            # CV folds partition the rows: one pass over the data
            G_all = sum(held.values(), torch.zeros((), dtype=torch.float64))
        else:
            G_all = (Xc.T @ Xc).double()
    for p, m in enumerate(masks_t):
        if G_all is not None and int(m.sum()) > 0.5 * len(m):
            grams.append(G_all - held[p] if p in held else G_all)  # torch.stack copies
        else:
            sel = Xc[m]
            grams.append((sel.T @ sel).double())
    G = torch.stack(grams)
    shift = sums.double() / counts.clamp(min=1)[:, None]  # each mask's mean minus the overall
    Gc = G - counts[:, None, None] * shift[:, :, None] * shift[:, None, :]
    return counts, shift + mu, Gc, Xc


#: ``alpha="auto"`` chooses among these by efficient leave-one-out, as
#: ``RidgeCV(alphas=RIDGE_ALPHAS)`` does (penalties on standardised features)
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 6, 17))


def ridge_fits(
    X: np.ndarray,
    Y: np.ndarray,
    masks: np.ndarray,
    alpha: float | str,
    moments: Moments | None = None,
    standardize: bool = True,
    alphas: Sequence[float] = RIDGE_ALPHAS,
) -> LinearFits:
    """Ridge with intercept for each train mask; every label column of ``Y`` at once.

    Each problem equals scikit-learn's ``make_pipeline(StandardScaler(), Ridge(alpha))`` fitted
    on its train rows (``standardize=False``: ``Ridge(alpha)`` on raw features), and
    ``alpha="auto"`` equals ``make_pipeline(StandardScaler(), RidgeCV(alphas))``: one alpha per
    problem (shared by the columns of ``Y``) with the least mean squared leave-one-out error,
    in closed form from one eigendecomposition of the problem's standardised Gram matrix.

    Args:
        X: ``[n, d]`` activations of one layer.
        Y: ``[n, t]`` targets (the columns of one label set).
        masks: ``[P, n]`` bool, the train rows of each problem.
        alpha: L2 penalty (scikit-learn's ``Ridge(alpha)``), or ``"auto"``.
        moments: ``ridge_moments(X, masks)`` when several label sets share ``X`` and ``masks``.
        standardize: standardise features per train set (the default) or keep them raw.
        alphas: the grid of ``alpha="auto"``.

    Returns:
        ``LinearFits`` with ``coef [P, d, t]`` (raw feature units), ``intercept [P, t]`` and
        the ``alpha [P]`` used.
    """
    Xt = torch.from_numpy(np.ascontiguousarray(X))
    Yt = torch.from_numpy(np.ascontiguousarray(Y, dtype=np.float64))
    counts, means, Gc, Xc = moments if moments is not None else _moments(Xt, masks)
    m = torch.from_numpy(masks).double()
    y_means = (m @ Yt) / counts[:, None]  # [P, t]
    # centred cross-products sum_i m_i (x_i - mu)(y_i - ybar_p): the overall-mean shift of x
    # drops out; [P, t, n] @ [n, d] is one float32 GEMM
    Yc = (m[:, None, :] * (Yt.T[None] - y_means[:, :, None])).to(Xc.dtype)  # [P, t, n]
    XtY_c = (Yc @ Xc).double().transpose(1, 2).contiguous()  # [P, d, t]
    d = X.shape[1]
    if standardize:  # StandardScaler on each train set: population std, 1 where it is 0
        var = torch.diagonal(Gc, dim1=1, dim2=2) / counts[:, None]  # [P, d]
        scale = torch.where(var > 1e-24 * (1 + means.square()), var.sqrt(), torch.ones_like(var))
    else:
        scale = torch.ones(len(Gc), d, dtype=torch.float64)
    # in standardised coordinates: (Gs + alpha I) v = Xs' y_c, w = v / scale
    Gs = Gc / (scale[:, :, None] * scale[:, None, :])
    rhs = XtY_c / scale[:, :, None]
    if isinstance(alpha, str):
        if alpha != "auto":
            raise ValueError(f"alpha={alpha!r}: pass a number >= 0 or 'auto'")
        v, chosen = _ridge_loo(Xc, Yt, m, counts, means, scale, Gs, rhs, y_means, alphas)
    else:
        eye = torch.eye(d, dtype=torch.float64)
        # Gs + alpha I is symmetric positive definite: Cholesky, not a general LU solve (MKL's
        # batched LU once failed here intermittently, "Parameter 6 ... DLASWP")
        v = torch.cholesky_solve(rhs, torch.linalg.cholesky(Gs + alpha * eye))  # [P, d, t]
        chosen = torch.full((len(Gc),), float(alpha), dtype=torch.float64)
    coef = v / scale[:, :, None]
    intercept = y_means - torch.einsum("pd,pdt->pt", means, coef)
    return LinearFits(coef.numpy(), intercept.numpy(), alpha=chosen.numpy())


def _ridge_loo(
    Xc: torch.Tensor,
    Yt: torch.Tensor,
    m: torch.Tensor,
    counts: torch.Tensor,
    means: torch.Tensor,
    scale: torch.Tensor,
    Gs: torch.Tensor,
    rhs: torch.Tensor,
    y_means: torch.Tensor,
    alphas: Sequence[float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per problem, the alpha of least leave-one-out error and its solution ``v [P, d, t]``.

    With ``Gs = V diag(lam) V'`` and ``Q = Xs V`` (the train rows, standardised and centred),
    the hat matrix's diagonal is ``sum_k Q_ik^2 / (lam_k + a) + 1/n`` (the free intercept) and
    the leave-one-out residual is ``(y_i - yhat_i) / (1 - h_i)``, as in scikit-learn's RidgeCV."""
    a = torch.tensor(list(alphas), dtype=torch.float64)  # [A]
    out, chosen = [], []
    for p in range(len(Gs)):
        lam, V = torch.linalg.eigh(Gs[p])
        lam = lam.clamp(min=0.0)
        rows = m[p] > 0
        A = (V / scale[p][:, None]).to(Xc.dtype)  # [d, d]
        Q = (Xc[rows] @ A).double()  # [n_p, d]; Xc is centred on the overall mean
        Q -= Q.mean(dim=0)  # on the train rows' mean
        yc = Yt[rows] - y_means[p]  # [n_p, t]
        c = Q.T @ yc  # [d, t] = V' Xs' y_c
        inv = 1.0 / (lam[None, :] + a[:, None])  # [A, d]
        h = Q.square() @ inv.T + 1.0 / counts[p]  # [n_p, A]
        fitted = (Q @ (inv.T[:, :, None] * c[:, None, :]).reshape(len(lam), -1)).view(
            len(Q), len(a), -1
        )  # [n_p, A, t]
        loo = (yc[:, None, :] - fitted) / (1.0 - h)[:, :, None]
        best = int(loo.square().mean(dim=(0, 2)).argmin())
        out.append(V @ (inv[best][:, None] * (V.T @ rhs[p])))
        chosen.append(float(a[best]))
    return torch.stack(out), torch.tensor(chosen, dtype=torch.float64)


@dataclass(frozen=True)
class Standardized:
    """One layer's rows standardised once, shared by every logistic problem on them.

    Attributes:
        mean, scale: ``[d]`` the rows' mean and standard deviation (1 where it is 0).
        S: ``[n, d]`` ``(X - mean) / scale`` (float64).
    """

    mean: torch.Tensor
    scale: torch.Tensor
    S: torch.Tensor

    @functools.cached_property
    def S32(self) -> torch.Tensor:
        """``S`` in float32, for the preconditioner's Gram matrices (they need no more)."""
        return self.S.float()

    @functools.cached_property
    def gram(self) -> torch.Tensor:
        """``[d, d]`` ``S'S / n`` (float64 from a float32 GEMM)."""
        return (self.S32.T @ self.S32).double() / len(self.S)

    def rows(self, order: np.ndarray) -> Standardized:
        """The same standardisation of the rows ``order`` (a permutation or subset)."""
        return Standardized(self.mean, self.scale, self.S[torch.from_numpy(order)])


def standardize_rows(X: np.ndarray) -> Standardized:
    """The ``Standardized`` rows of ``X [n, d]`` (float64: the solver resolves changes far below
    float32's 1e-7)."""
    Xd = torch.from_numpy(np.asarray(X, dtype=np.float64))
    mean = Xd.mean(dim=0)
    Xc = Xd - mean
    scale = Xc.square().mean(dim=0).sqrt()
    scale = torch.where(scale > 1e-12 * (1 + mean.abs()), scale, torch.ones_like(scale))
    return Standardized(mean, scale, Xc / scale)


def _penalty_weights(st: Standardized, M: torch.Tensor, standardize: bool) -> torch.Tensor:
    """``[P, d]`` weights of ``||v||^2`` per problem in the layer's standardised coordinates
    ``v = w * scale``: StandardScaler fitted on each problem's train rows gives ``(s_p /
    scale)^2`` (``s_p`` that train set's standard deviation, 1 where it is 0, as scikit-learn's);
    raw features give ``1 / scale^2``."""
    if not standardize:
        return (1.0 / st.scale.square()).expand(M.shape[0], -1).contiguous()
    n_p = M.sum(dim=1, keepdim=True)
    mean_p = (M @ st.S) / n_p
    var_p = (M @ st.S.square()) / n_p - mean_p.square()  # [P, d], in units of scale^2
    var_p = var_p.clamp(min=0.0)
    zero = var_p * st.scale.square() <= 1e-24 * (1 + (mean_p * st.scale + st.mean).square())
    return torch.where(zero, 1.0 / st.scale.square(), var_p)


class _Cholesky:
    """``L`` with ``L L' = H`` (a dense ``[d, d]`` Hessian at zero), applied by triangular solves:
    in float32 while ``mixed`` (the float32 phase of the solver: a preconditioner needs no more),
    in float64 when asked for ``exact`` solves (the float64 phase and the final check)."""

    def __init__(self, H: torch.Tensor, mixed: bool) -> None:
        L = torch.linalg.cholesky(H)
        self.L, self.LT = L, L.mT.contiguous()  # no transposed copy per call
        self.L32 = (L.float(), self.LT.float()) if mixed else None

    def solve(self, rhs: torch.Tensor, transpose: bool, exact: bool = False) -> torch.Tensor:
        """``L^-T rhs`` (``transpose``) or ``L^-1 rhs`` for ``rhs [d, m]`` (float64 result)."""
        if self.L32 is None or exact:
            A = self.LT if transpose else self.L
            return torch.linalg.solve_triangular(A, rhs, upper=transpose)
        A = self.L32[1] if transpose else self.L32[0]
        return torch.linalg.solve_triangular(A, rhs.float(), upper=transpose).double()


def _factors(
    st: Standardized, train_sets: np.ndarray, pen: torch.Tensor, c: float, mixed: bool
) -> list[_Cholesky]:
    """The Cholesky factor of ``c S_u'S_u + diag(pen_u)`` for each train set (``train_sets
    [U, n]`` bool, ``pen [U, d]``)."""
    out = []
    for m, p in zip(train_sets, pen, strict=True):
        S32 = st.S32[torch.from_numpy(m)]
        H = (S32.T @ S32).double() * c
        H.diagonal().add_(p)
        out.append(_Cholesky(H, mixed))
    return out


def _newton_few_rows(
    st: Standardized, rows: np.ndarray, y: np.ndarray, pen: torch.Tensor, C: float, tol: float
) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    """Binary logistic fits of ``m`` label vectors ``y [m, n]`` on one train set ``rows [n]``
    of ``r`` rows, ``r`` below ``d``, by Newton's method in an ``r``-dimensional basis.

    The optimum's weights lie in the span of ``D^-1 S_u'`` (``D = diag(pen)``, ``S_u`` the
    train rows; the gradient of the loss is in the rows' span): with ``A = S_u D^-1/2 = W Sigma
    Q'`` (thin SVD from the ``[r, r]`` Gram), ``v = D^-1/2 Q c`` turns the problem into a
    logistic ridge on ``r`` features ``F = W Sigma`` with penalty ``|c|^2 / 2``, whose Hessian is
    ``[r + 1, r + 1]``: a few exact Newton steps (with backtracking) instead of a ``d^3``
    factorisation and tens of L-BFGS steps. Returns standardised weights ``v [m, d]``,
    intercepts ``b [m]``, the steps taken and whether every fit reached ``tol``."""
    S_u = st.S[torch.from_numpy(rows)]  # [r, d]
    root_inv = pen.rsqrt()
    A = S_u * root_inv
    eig, W = torch.linalg.eigh(A @ A.T)
    keep = eig > 1e-12 * float(eig.max().clamp(min=1e-300))
    F = W[:, keep] * eig[keep].sqrt()  # [r, q]
    t = torch.from_numpy(np.asarray(y, dtype=np.float64)[:, rows])  # [m, r]
    m, q, n_u = len(t), F.shape[1], len(t[0])
    sign = 1.0 - 2.0 * t
    theta = torch.zeros(m, q + 1, dtype=torch.float64)  # (c, b)
    Fb = torch.cat([F, torch.ones(n_u, 1, dtype=torch.float64)], dim=1)  # [r, q + 1]
    ridge = torch.ones(q + 1, dtype=torch.float64)
    ridge[q] = 0.0  # the intercept is not penalised

    def loss(th: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Objective ``[m]`` and scores ``[m, r]`` at ``th``."""
        z = th @ Fb.T
        return C * torch.nn.functional.softplus(sign * z).sum(dim=1) + 0.5 * (
            th[:, :q].square().sum(dim=1)
        ), z

    f, z = loss(theta)
    limit = tol * C * n_u
    steps, converged = 0, False
    while True:
        p = torch.sigmoid(z)
        grad = C * (p - t) @ Fb + ridge * theta  # [m, q + 1]
        if float(grad.abs().amax()) <= 1e-3 * limit:
            converged = True
            break
        if steps == 100:  # judged by the last point's gradient
            converged = float(grad.abs().amax()) <= 10 * limit
            break
        steps += 1
        w = C * p * (1.0 - p)  # [m, r]
        H = Fb.T @ (w[:, :, None] * Fb)  # [m, q + 1, q + 1]
        H.diagonal(dim1=1, dim2=2).add_(ridge + 1e-12)
        delta = -torch.linalg.solve(H, grad[..., None])[..., 0]
        slope = (grad * delta).sum(dim=1)
        step = torch.ones(m, dtype=torch.float64)
        for halvings in range(40):  # Armijo backtracking, per problem
            f_new, z_new = loss(theta + step[:, None] * delta)
            ok = f_new <= f + 1e-4 * step * slope
            if bool(ok.all()) or halvings == 39:
                break
            step = torch.where(ok, step, step / 2)
        theta, f, z = theta + step[:, None] * delta, f_new, z_new
    # v = D^-1/2 Q c with Q = A' W Sigma^-1
    Q_c = A.T @ ((W[:, keep] / eig[keep].sqrt()) @ theta[:, :q].T)  # [d, m]
    return (root_inv[:, None] * Q_c).T, theta[:, q], steps, converged


def _compact_lbfgs(
    s_hist: torch.Tensor,
    y_hist: torch.Tensor,
    count: int,
    g: torch.Tensor,
    problems: torch.Tensor | slice = slice(None),
) -> torch.Tensor:
    """``H g`` for the L-BFGS inverse Hessian of each of the ``problems``, from the last
    ``min(count, hist)`` pairs of the ring buffers ``s_hist, y_hist [hist, P, D, k]`` (``count``
    pairs stored so far, the same for each of these problems), for gradients ``g [a, D, k]``.

    The compact representation (Byrd, Nocedal & Schnabel, 1994): with ``S, Y [P, D k, m]`` the
    pairs oldest first, ``R`` the upper triangle of ``S'Y``, ``Dg`` its diagonal and ``gamma =
    s'y / y'y`` of the newest pair, ``H g = gamma g + S a - gamma Y u``, ``u = R^-1 S'g``,
    ``a = R^-T ((Dg + gamma Y'Y) u - gamma Y'g)``: the same direction as the two-loop
    recursion, in a dozen batched products instead of four small operations per pair."""
    hist, P = s_hist.shape[0], len(g)
    m = min(count, hist)
    slots = torch.tensor([(count - m + i) % hist for i in range(m)])
    S = s_hist[slots][:, problems].reshape(m, P, -1).permute(1, 2, 0)  # [P, Dk, m]
    Y = y_hist[slots][:, problems].reshape(m, P, -1).permute(1, 2, 0)
    gv = g.reshape(P, -1, 1)
    St, Yt = S.mT, Y.mT
    SY, YY = St @ Y, Yt @ Y  # [P, m, m]
    gamma = (SY[:, -1, -1] / YY[:, -1, -1])[:, None, None]  # [P, 1, 1]
    R = SY.triu()
    u = torch.linalg.solve_triangular(R, St @ gv, upper=True)  # [P, m, 1]
    inner = (SY.diagonal(dim1=1, dim2=2)[..., None] * u) + gamma * (YY @ u) - gamma * (Yt @ gv)
    a = torch.linalg.solve_triangular(R.mT, inner, upper=False)
    return (gamma * gv + S @ a - gamma * (Y @ u)).view_as(g)


def _with_newton(
    X: np.ndarray,
    y: np.ndarray,
    masks: np.ndarray,
    few: np.ndarray,
    st: Standardized,
    C: float,
    tol: float,
    standardize: bool,
    rest_kw: dict,
) -> LinearFits:
    """``logistic_fits`` (binary, ``precondition="each"``) with the problems of few train rows
    (``few [P]``: at most ``d / 2``) solved by ``_newton_few_rows``, one train set at a time,
    and the others by the batched L-BFGS."""
    P, d = len(masks), st.S.shape[1]
    coef, intercept = np.empty((P, d, 1)), np.empty((P, 1))
    idx = np.flatnonzero(few)
    pen = _penalty_weights(st, torch.from_numpy(masks[idx].astype(np.float64)), standardize)
    sets, owner = np.unique(masks[idx], axis=0, return_inverse=True)
    owner = owner.reshape(-1)
    n_iter, converged = 0, True
    for u, rows in enumerate(sets):
        members = idx[owner == u]
        v, b, steps, ok = _newton_few_rows(
            st, np.flatnonzero(rows), y[members], pen[np.flatnonzero(owner == u)[0]], C, tol
        )
        raw = v / st.scale  # [m, d]
        coef[members, :, 0], intercept[members, 0] = raw.numpy(), (b - raw @ st.mean).numpy()
        n_iter, converged = max(n_iter, steps), converged and ok
    if not converged:
        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(
            f"logistic_fits: a Newton fit on few rows stopped short of tol={tol}: regularise "
            "more (lower C)",
            ConvergenceWarning,
            stacklevel=3,
        )
    if not few.all():
        rest = logistic_fits(
            X, y[~few], masks[~few], C, tol=tol, standardize=standardize, prepared=st, **rest_kw
        )
        coef[~few], intercept[~few] = rest.coef, rest.intercept
        n_iter, converged = max(n_iter, rest.n_iter), converged and rest.converged
    return LinearFits(coef, intercept, n_iter, converged)


def logistic_fits(
    X: np.ndarray,
    y: np.ndarray,
    masks: np.ndarray,
    C: float,
    max_iter: int = 500,
    tol: float = 1e-5,
    n_classes: int = 2,
    standardize: bool = True,
    prepared: Standardized | None = None,
    precondition: str = "shared",
    precision: str = "mixed",
) -> LinearFits:
    """L2 logistic regression for each (train mask, label vector) problem of one layer.

    Each problem ``p`` is scikit-learn's ``make_pipeline(StandardScaler(), LogisticRegression(C))``
    fitted on its train rows (``standardize=False``: ``LogisticRegression(C)`` on raw features):
    objective ``C * sum(logloss) + ||w_std||^2 / 2``, intercept unpenalised. Binary problems
    (``n_classes=2``) use one weight vector and the sigmoid; more classes use the multinomial
    (softmax) loss with all ``K`` weight vectors penalised, as scikit-learn does.

    How: the rows are standardised once per layer (``v = w * scale``); a train set's own scaler
    only reweights the penalty (``sum_j (s_pj / scale_j)^2 v_j^2``) since the intercept absorbs its
    centring, so the fit equals the pipeline's exactly. The variables are preconditioned by the
    Cholesky factor ``L`` of the Hessian at zero, ``C S'S / 4 + diag(penalty)`` (``v = L^-T u``;
    ``precondition="each"``: one factor per problem from its own train rows), and a
    batched L-BFGS with per-problem histories and line searches solves every problem at
    once: each step is two GEMMs ``[n, d] x [d, P*k]`` and two triangular solves.

    Args:
        X: ``[n, d]`` activations of one layer.
        y: ``[P, n]`` integer labels in ``0..n_classes-1``, one row per problem.
        masks: ``[P, n]`` bool train rows of each problem.
        C: inverse regularisation (scikit-learn's convention).
        max_iter: L-BFGS iterations at most.
        tol: stop a problem when its largest preconditioned gradient entry, divided by ``C`` times
            its train rows, is below ``tol`` (scikit-learn's ``tol=1e-4`` is on the same scale;
            the default ``1e-5`` is ten times tighter: on SmolLM2's ``cities`` states it changes
            about 1 in 1,000 predictions against ``1e-6``, at half the steps).
        n_classes: number of classes ``K``.
        standardize: standardise features per train set (the default) or keep them raw.
        prepared: ``standardize_rows(X)`` when several label sets share ``X`` (task, control task).
        precondition: ``"shared"``, one Cholesky factor from all rows (train sets of similar
            size: CV folds); ``"each"``, one per train set from its own rows (train sets of very
            different sizes: the prefixes of the online code); binary problems whose train set
            has at most ``d / 2`` rows are solved exactly by Newton's method in the rows' span
            (``_newton_few_rows``: no ``d^3`` factorisation, a few steps).
        precision: ``"mixed"``, the two GEMMs and the preconditioner's solves per step in
            float32 (scores are recomputed in float64 every 10 steps, the objective is summed in
            float64, and once every problem has converged or stalled in float32 the gradients
            are checked in float64 and the problems short of ``tol`` go on in float64, solves
            included); ``"double"``, every product in float64.

    Returns:
        ``LinearFits`` with ``coef [P, d, k]`` (raw feature units) and ``intercept [P, k]``, ``k =
        1`` for binary problems (the score of class 1) and ``k = K`` otherwise.
    """
    st = prepared if prepared is not None else standardize_rows(X)
    masks, y = np.asarray(masks, dtype=bool), np.asarray(y)
    few = masks.sum(axis=1) <= st.S.shape[1] // 2
    if precondition == "each" and n_classes == 2 and few.any():
        return _with_newton(
            X,
            y,
            masks,
            few,
            st,
            C,
            tol,
            standardize,
            dict(max_iter=max_iter, precondition=precondition, precision=precision),
        )
    used = masks.any(axis=0)
    if not used.all():  # rows no problem trains on (the online code's later blocks): drop them
        keep = np.flatnonzero(used)
        st, masks, y = st.rows(keep), masks[:, keep], y[:, keep]
    S = st.S
    n, d = S.shape
    M = torch.from_numpy(masks.astype(np.float64))  # [P, n]
    P = M.shape[0]
    k = 1 if n_classes == 2 else n_classes
    n_p = M.sum(dim=1)  # [P]
    pen = _penalty_weights(st, M, standardize)  # [P, d]
    each = precondition == "each"
    if each:  # per train set: C S_p'S_p / 4 + diag(pen_p), from its own rows
        uniq, owner_np = np.unique(masks, axis=0, return_inverse=True)
        owner = torch.from_numpy(owner_np.reshape(-1))  # [P]: the train set of each problem
        first = [int(np.nonzero(owner_np.reshape(-1) == u)[0][0]) for u in range(len(uniq))]
        factors = _factors(st, uniq, pen[first], C / 4.0, mixed=precision == "mixed")
    else:  # a typical problem's Hessian at zero: C n_bar S'S / (4 n) + diag(mean penalty)
        shared = _Cholesky(
            (C * float(n_p.mean()) / 4.0) * st.gram + torch.diag(pen.mean(dim=0)),
            mixed=precision == "mixed",
        )
    c0 = 2.0 / (C * n_p).sqrt()  # [P]: intercept b = c0 * u_b has unit curvature at zero
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))  # [P, n]
    classes = torch.arange(1, 2) if k == 1 else torch.arange(n_classes)
    target = (labels[..., None] == classes).double()  # [P, n, k]
    weight = (C * M)[..., None]  # [P, n, 1]
    pen_k = pen[:, :, None]  # [P, d, 1]

    def each_solve(B: torch.Tensor, idx: torch.Tensor | slice, transpose: bool) -> torch.Tensor:
        """``L_u^-T b`` (``transpose``) or ``L_u^-1 b`` for problems ``idx``, ``u`` the train
        set of each: one solve per train set for all its problems (label sets)."""
        out = torch.empty_like(B)
        own = owner[idx]
        for u in torch.unique(own).tolist():
            sel = torch.nonzero(own == u)[:, 0]
            rhs = B[sel].permute(1, 0, 2).reshape(d, -1)
            sol = factors[u].solve(rhs, transpose, exact=gemm[0] is S)
            out[sel] = sol.view(d, len(sel), k).permute(1, 0, 2)
        return out

    def to_v(Uw: torch.Tensor, idx: torch.Tensor | slice) -> torch.Tensor:
        """``v = P^-1 u`` for ``Uw [m, d, k]`` (``P`` the preconditioner's square root)."""
        m = len(Uw)
        if each:
            return each_solve(Uw, idx, transpose=True)
        flat = shared.solve(Uw.permute(1, 0, 2).reshape(d, m * k), True, exact=gemm[0] is S)
        return flat.view(d, m, k).permute(1, 0, 2)

    def to_u(Gv: torch.Tensor, idx: torch.Tensor | slice) -> torch.Tensor:
        """The gradient in ``u``, ``P^-T g_v``, for ``Gv [m, d, k]``."""
        m = len(Gv)
        if each:
            return each_solve(Gv, idx, transpose=False)
        flat = shared.solve(Gv.permute(1, 0, 2).reshape(d, m * k), False, exact=gemm[0] is S)
        return flat.view(d, m, k).permute(1, 0, 2)

    # the GEMMs' copy of S: float32 until the float32 phase ends, then S itself
    gemm = [st.S32 if precision == "mixed" else S]

    def scores(V: torch.Tensor, b: torch.Tensor, exact: bool = False) -> torch.Tensor:
        """``z = S V + b`` ``[m, n, k]`` for ``V [m, d, k]``, ``b [m, k]`` (float64 result)."""
        m = len(V)
        A = S if exact else gemm[0]
        # [m k, d] x [d, n]: the long dimension n along the output rows (about twice as fast
        # as [n, d] x [d, m k] at 1 thread)
        flat = V.permute(0, 2, 1).reshape(m * k, d).to(A.dtype) @ A.T
        return flat.double().view(m, k, n).permute(0, 2, 1) + b[:, None, :]

    def value(Z: torch.Tensor, V: torch.Tensor, idx: torch.Tensor | slice) -> torch.Tensor:
        """Objective ``[m]`` of problems ``idx`` at scores ``Z`` and weights ``V``."""
        t, wgt = target[idx], weight[idx, :, 0]
        if k == 1:
            per_row = torch.nn.functional.softplus((1.0 - 2.0 * t) * Z)[..., 0]
        else:
            per_row = torch.logsumexp(Z, dim=2) - (Z * t).sum(dim=2)
        return (per_row * wgt).sum(dim=1) + 0.5 * (V.square() * pen_k[idx]).sum(dim=(1, 2))

    def gradient(
        Z: torch.Tensor, V: torch.Tensor, idx: torch.Tensor | slice, exact: bool = False
    ) -> torch.Tensor:
        """Gradient ``[m, d + 1, k]`` in ``u`` of problems ``idx`` at scores ``Z``, weights ``V``."""
        m = len(Z)
        t, wgt = target[idx], weight[idx]
        dz = ((torch.sigmoid(Z) if k == 1 else torch.softmax(Z, dim=2)) - t) * wgt
        A = S if exact else gemm[0]
        flat = dz.permute(0, 2, 1).reshape(m * k, n).to(A.dtype) @ A  # [m k, d], as in scores
        gv = flat.double().view(m, k, d).permute(0, 2, 1)
        gu = to_u(gv + V * pen_k[idx], idx)
        return torch.cat([gu, (c0[idx, None] * dz.sum(dim=1))[:, None]], dim=1)

    # the state of every problem: u-space variables U, their weights V = P^-1 u and scores Z;
    # a step along a direction moves Z by the direction's scores (one GEMM per iteration), so
    # the line search's trial points cost no GEMM; Z is recomputed exactly every few steps so
    # rounding in the mixed-precision GEMMs does not accumulate
    all_p = torch.arange(P)
    U = torch.zeros(P, d + 1, k, dtype=torch.float64)
    V = torch.zeros(P, d, k, dtype=torch.float64)
    Z = torch.zeros(P, n, k, dtype=torch.float64)
    f, g = value(Z, V, all_p), gradient(Z, V, all_p)
    scale_tol = tol * C * n_p  # [P]
    hist = 10
    s_hist = torch.zeros(hist, P, d + 1, k, dtype=torch.float64)
    y_hist = torch.zeros_like(s_hist)
    rho = torch.zeros(hist, P, dtype=torch.float64)  # 0: an empty slot, skipped
    count = torch.zeros(P, dtype=torch.long)
    done = g.abs().amax(dim=(1, 2)) <= scale_tol
    n_iter = 0
    while n_iter < max_iter:
        active = torch.nonzero(~done)[:, 0]
        if len(active) == 0:
            break
        n_iter += 1
        # every problem active with the same history length (the usual case): basic slices
        # and views instead of gathers of the [hist, P, d + 1, k] history
        full = len(active) == P
        counts = count[active]
        same = bool((counts == counts[0]).all())  # the active problems' histories line up
        lock = full and same
        sel: slice | torch.Tensor = slice(None) if full else active
        ga = g[sel]
        if same and int(counts[0]) > 0:  # histories of the same length: compact form
            direction = -_compact_lbfgs(s_hist, y_hist, int(counts[0]), ga, sel)
        else:
            # two-loop recursion over the slots, newest first, batched over the active problems
            latest = (count[active] - 1) % hist  # [a]
            q = -ga
            alphas = []
            for j in range(min(int(count[active].max()), hist)):
                if lock:
                    slot: int | torch.Tensor = (int(count[0]) - 1 - j) % hist
                    s_j, y_j, r_j = s_hist[slot], y_hist[slot], rho[slot]
                else:
                    slot = (latest - j) % hist
                    s_j, y_j, r_j = s_hist[slot, active], y_hist[slot, active], rho[slot, active]
                    r_j = torch.where(count[active] > j, r_j, torch.zeros_like(r_j))
                a = r_j * (s_j * q).sum(dim=(1, 2))
                q = q - a[:, None, None] * y_j
                alphas.append((slot, s_j, y_j, a, r_j))
            if lock:
                s_l, y_l = s_hist[(int(count[0]) - 1) % hist], y_hist[(int(count[0]) - 1) % hist]
            else:
                s_l, y_l = s_hist[latest, active], y_hist[latest, active]
            yy = (y_l * y_l).sum(dim=(1, 2))
            sy_l = (s_l * y_l).sum(dim=(1, 2))
            gamma = torch.where((count[active] > 0) & (yy > 0), sy_l / yy.clamp(min=1e-300), 1.0)
            q = q * gamma[:, None, None]
            for _, s_j, y_j, a, r_j in reversed(alphas):
                beta = r_j * (y_j * q).sum(dim=(1, 2))
                q = q + (a - beta)[:, None, None] * s_j
            direction = q
        slope = (direction * ga).sum(dim=(1, 2))
        bad = slope >= 0
        if bad.any():  # not a descent direction: restart from the gradient
            direction[bad] = -ga[bad]
            slope = (direction * ga).sum(dim=(1, 2))
        dV = to_v(direction[:, :d], active)  # [a, d, k]
        dZ = scores(dV, c0[sel, None] * direction[:, d])  # [a, n, k]
        step = torch.ones(len(active), dtype=torch.float64)
        f_old, V_a, Z_a = f[sel].clone(), V[sel], Z[sel]
        f_new = f_old.clone()
        accepted = torch.zeros(len(active), dtype=torch.bool)
        pending = torch.arange(len(active))
        for _ in range(40):  # Armijo backtracking, per problem, on the scores alone
            if len(pending) == len(active):
                st_ = step[:, None, None]
                fv = value(Z_a + st_ * dZ, V_a + st_ * dV, sel)
            else:
                st_ = step[pending, None, None]
                fv = value(
                    Z_a[pending] + st_ * dZ[pending],
                    V_a[pending] + st_ * dV[pending],
                    active[pending],
                )
            ok = fv <= f_old[pending] + 1e-4 * step[pending] * slope[pending]
            f_new[pending[ok]] = fv[ok]
            accepted[pending[ok]] = True
            pending = pending[~ok]
            if len(pending) == 0:
                break
            step[pending] *= 0.5
        stalled = ~accepted  # no decrease found: at the precision limit
        step = torch.where(accepted, step, torch.zeros_like(step))
        U_new = U[sel] + step[:, None, None] * direction
        V_new = V_a + step[:, None, None] * dV
        if n_iter % 10 == 0:  # exact scores, so float32 rounding does not accumulate
            Z_new = scores(V_new, c0[sel, None] * U_new[:, d], exact=True)
            f_new = torch.where(accepted, value(Z_new, V_new, sel), f_old)
        else:
            Z_new = Z_a + step[:, None, None] * dZ
        g_new = gradient(Z_new, V_new, sel)
        s_new, y_new = U_new - U[sel], g_new - ga
        sy = (s_new * y_new).sum(dim=(1, 2))
        norms = (y_new.square().sum(dim=(1, 2)) * s_new.square().sum(dim=(1, 2))).sqrt()
        upd = sy > 1e-12 * norms  # curvature condition: keep the pair
        if lock and bool(upd.all()):
            slot_i = int(count[0]) % hist
            s_hist[slot_i], y_hist[slot_i], rho[slot_i] = s_new, y_new, 1.0 / sy
            count += 1
        elif upd.any():
            p_upd = active[upd]
            slot = count[p_upd] % hist
            s_hist[slot, p_upd], y_hist[slot, p_upd] = s_new[upd], y_new[upd]
            rho[slot, p_upd] = 1.0 / sy[upd]
            count[p_upd] += 1
        U[sel], V[sel], Z[sel], f[sel], g[sel] = U_new, V_new, Z_new, f_new, g_new
        small = g_new.abs().amax(dim=(1, 2)) <= scale_tol[sel]
        flat = (f_old - f_new).abs() <= 1e-15 * f_old.abs().clamp(min=1.0)
        done[sel] = small | stalled | flat
        if bool(done.all()) and gemm[0] is not S:
            # the float32 phase has converged or reached its rounding: check in float64 and
            # finish there the problems that are not within tol
            gemm[0] = S
            Z = scores(V, c0[:, None] * U[:, d], exact=True)
            f, g = value(Z, V, all_p), gradient(Z, V, all_p)
            done = g.abs().amax(dim=(1, 2)) <= scale_tol
    # the final gradient from exact float64 scores (and solves) at the weights V the steps
    # carried decides convergence (U came partly through float32 solves: V is the reference)
    gemm[0] = S
    g = gradient(scores(V, c0[:, None] * U[:, d], exact=True), V, all_p, exact=True)
    short = g.abs().amax(dim=(1, 2)) > 10 * scale_tol
    converged = not bool(short.any())
    if not converged:
        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(
            f"logistic_fits: {int(short.sum())} of {P} problems stopped short of tol={tol} "
            f"after {n_iter} steps (max_iter={max_iter}): raise max_iter, or regularise more "
            "(lower C)",
            ConvergenceWarning,
            stacklevel=2,
        )
    coef = V / st.scale[None, :, None]  # [P, d, k]
    intercept = c0[:, None] * U[:, d] - torch.einsum("d,pdk->pk", st.mean, coef)
    return LinearFits(coef.numpy(), intercept.numpy(), n_iter, converged)
