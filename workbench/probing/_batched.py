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


def logistic_fits(
    X: np.ndarray,
    y: np.ndarray,
    masks: np.ndarray,
    C: float,
    max_iter: int = 500,
    tol: float = 1e-6,
    n_classes: int = 2,
    standardize: bool = True,
    prepared: Standardized | None = None,
    precondition: str = "shared",
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
            its train rows, is below ``tol`` (scikit-learn's ``tol=1e-4`` is on the same scale).
        n_classes: number of classes ``K``.
        standardize: standardise features per train set (the default) or keep them raw.
        prepared: ``standardize_rows(X)`` when several label sets share ``X`` (task, control task).
        precondition: ``"shared"``, one Cholesky factor from all rows (train sets of similar
            size: CV folds); ``"each"``, one per problem from its own rows (train sets of very
            different sizes: the prefixes of the online code).

    Returns:
        ``LinearFits`` with ``coef [P, d, k]`` (raw feature units) and ``intercept [P, k]``, ``k =
        1`` for binary problems (the score of class 1) and ``k = K`` otherwise.
    """
    st = prepared if prepared is not None else standardize_rows(X)
    S = st.S
    n, d = S.shape
    M = torch.from_numpy(np.asarray(masks, dtype=np.float64))  # [P, n]
    P = M.shape[0]
    k = 1 if n_classes == 2 else n_classes
    n_p = M.sum(dim=1)  # [P]
    pen = _penalty_weights(st, M, standardize)  # [P, d]
    each = precondition == "each"
    if each:  # per train set: C S_p'S_p / 4 + diag(pen_p), from its own rows
        uniq, owner_np = np.unique(np.asarray(masks, dtype=bool), axis=0, return_inverse=True)
        owner = torch.from_numpy(owner_np.reshape(-1))  # [P]: the train set of each problem
        first = [int(np.nonzero(owner_np.reshape(-1) == u)[0][0]) for u in range(len(uniq))]
        S32 = st.S32
        grams = torch.stack([S32[torch.from_numpy(m)].T @ S32[torch.from_numpy(m)] for m in uniq])
        H0 = grams.double() * (C / 4.0)
        H0.diagonal(dim1=1, dim2=2).add_(pen[first])
        L = torch.linalg.cholesky(H0)
        LT = L.mT.contiguous()  # solves read a factor per call: no transposed copy each time
    else:  # a typical problem's Hessian at zero: C n_bar S'S / (4 n) + diag(mean penalty)
        L = torch.linalg.cholesky(
            (C * float(n_p.mean()) / 4.0) * st.gram + torch.diag(pen.mean(dim=0))
        )
    c0 = 2.0 / (C * n_p).sqrt()  # [P]: intercept b = c0 * u_b has unit curvature at zero
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))  # [P, n]
    classes = torch.arange(1, 2) if k == 1 else torch.arange(n_classes)
    target = (labels[..., None] == classes).double()  # [P, n, k]
    weight = (C * M)[..., None]  # [P, n, 1]
    pen_k = pen[:, :, None]  # [P, d, 1]

    def each_solve(B: torch.Tensor, idx: torch.Tensor, transpose: bool) -> torch.Tensor:
        """``L_u^-T b`` (``transpose``) or ``L_u^-1 b`` for problems ``idx``, ``u`` the train
        set of each: one solve per train set for all its problems (label sets)."""
        out = torch.empty_like(B)
        own = owner[idx]
        for u in torch.unique(own).tolist():
            sel = torch.nonzero(own == u)[:, 0]
            rhs = B[sel].permute(1, 0, 2).reshape(d, -1)
            A = LT[u] if transpose else L[u]
            sol = torch.linalg.solve_triangular(A, rhs, upper=transpose)
            out[sel] = sol.view(d, len(sel), k).permute(1, 0, 2)
        return out

    def to_v(Uw: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``v = P^-1 u`` for ``Uw [m, d, k]`` (``P`` the preconditioner's square root)."""
        m = len(idx)
        if each:
            return each_solve(Uw, idx, transpose=True)
        else:
            flat = torch.linalg.solve_triangular(
                L.T, Uw.permute(1, 0, 2).reshape(d, m * k), upper=True
            )
        return flat.view(d, m, k).permute(1, 0, 2)

    def to_u(Gv: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The gradient in ``u``, ``P^-T g_v``, for ``Gv [m, d, k]``."""
        m = len(idx)
        if each:
            return each_solve(Gv, idx, transpose=False)
        flat = torch.linalg.solve_triangular(L, Gv.permute(1, 0, 2).reshape(d, m * k), upper=False)
        return flat.view(d, m, k).permute(1, 0, 2)

    def evaluate(U: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Objective ``[m]`` and gradient ``[m, d + 1, k]`` of problems ``idx`` at ``U``."""
        m = len(idx)
        V = to_v(U[:, :d], idx)  # [m, d, k]
        b = c0[idx, None] * U[:, d]  # [m, k]
        z = (S @ V.permute(1, 0, 2).reshape(d, m * k)).view(n, m, k).permute(1, 0, 2)
        z = z + b[:, None, :]  # [m, n, k]
        t, wgt = target[idx], weight[idx]
        if k == 1:
            per_row = torch.nn.functional.softplus((1.0 - 2.0 * t) * z)[..., 0]
            dz = (torch.sigmoid(z) - t) * wgt
        else:
            per_row = torch.logsumexp(z, dim=2) - (z * t).sum(dim=2)
            dz = (torch.softmax(z, dim=2) - t) * wgt
        penalty = (V.square() * pen_k[idx]).sum(dim=(1, 2))
        value = (per_row * wgt[..., 0]).sum(dim=1) + 0.5 * penalty
        gv = (S.T @ dz.permute(1, 0, 2).reshape(n, m * k)).view(d, m, k).permute(1, 0, 2)
        gu = to_u(gv + V * pen_k[idx], idx)
        return value, torch.cat([gu, (c0[idx, None] * dz.sum(dim=1))[:, None]], dim=1)

    U = torch.zeros(P, d + 1, k, dtype=torch.float64)
    f, g = evaluate(U, torch.arange(P))
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
        ga = g[active]
        # two-loop recursion over the slots, newest first, batched over the active problems
        latest = (count[active] - 1) % hist  # [a]
        q = -ga
        alphas = []
        for j in range(min(int(count[active].max()), hist)):
            slot = (latest - j) % hist
            s_j, y_j, r_j = s_hist[slot, active], y_hist[slot, active], rho[slot, active]
            r_j = torch.where(count[active] > j, r_j, torch.zeros_like(r_j))
            a = r_j * (s_j * q).sum(dim=(1, 2))
            q = q - a[:, None, None] * y_j
            alphas.append((slot, a, r_j))
        s_l, y_l = s_hist[latest, active], y_hist[latest, active]
        yy = (y_l * y_l).sum(dim=(1, 2))
        sy_l = (s_l * y_l).sum(dim=(1, 2))
        gamma = torch.where((count[active] > 0) & (yy > 0), sy_l / yy.clamp(min=1e-300), 1.0)
        q = q * gamma[:, None, None]
        for slot, a, r_j in reversed(alphas):
            beta = r_j * (y_hist[slot, active] * q).sum(dim=(1, 2))
            q = q + (a - beta)[:, None, None] * s_hist[slot, active]
        direction = q
        slope = (direction * ga).sum(dim=(1, 2))
        bad = slope >= 0
        if bad.any():  # not a descent direction: restart from the gradient
            direction[bad] = -ga[bad]
            slope = (direction * ga).sum(dim=(1, 2))
        step = torch.ones(len(active), dtype=torch.float64)
        f_old = f[active]
        U_new, f_new, g_new = U[active].clone(), f_old.clone(), ga.clone()
        pending = torch.arange(len(active))
        for _ in range(40):  # Armijo backtracking, per problem
            trial = U[active[pending]] + step[pending, None, None] * direction[pending]
            fv, gv = evaluate(trial, active[pending])
            ok = fv <= f_old[pending] + 1e-4 * step[pending] * slope[pending]
            acc = pending[ok]
            U_new[acc], f_new[acc], g_new[acc] = trial[ok], fv[ok], gv[ok]
            pending = pending[~ok]
            if len(pending) == 0:
                break
            step[pending] *= 0.5
        stalled = torch.zeros(len(active), dtype=torch.bool)
        stalled[pending] = True  # no decrease found: at the precision limit
        s_new, y_new = U_new - U[active], g_new - ga
        sy = (s_new * y_new).sum(dim=(1, 2))
        norms = (y_new.square().sum(dim=(1, 2)) * s_new.square().sum(dim=(1, 2))).sqrt()
        upd = sy > 1e-12 * norms  # curvature condition: keep the pair
        if upd.any():
            p_upd = active[upd]
            slot = count[p_upd] % hist
            s_hist[slot, p_upd], y_hist[slot, p_upd] = s_new[upd], y_new[upd]
            rho[slot, p_upd] = 1.0 / sy[upd]
            count[p_upd] += 1
        U[active], f[active], g[active] = U_new, f_new, g_new
        small = g_new.abs().amax(dim=(1, 2)) <= scale_tol[active]
        flat = (f_old - f_new).abs() <= 1e-15 * f_old.abs().clamp(min=1.0)
        done[active] = small | stalled | flat
    converged = bool((g.abs().amax(dim=(1, 2)) <= 10 * scale_tol).all())
    coef = to_v(U[:, :d], torch.arange(P)) / st.scale[None, :, None]  # [P, d, k]
    intercept = c0[:, None] * U[:, d] - torch.einsum("d,pdk->pk", st.mean, coef)
    return LinearFits(coef.numpy(), intercept.numpy(), n_iter, converged)
