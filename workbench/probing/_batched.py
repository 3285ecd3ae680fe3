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


def ridge_fits(X: np.ndarray, Y: np.ndarray, masks: np.ndarray, alpha: float,
               moments: Moments | None = None) -> LinearFits:
    """Ridge with intercept for each train mask; every label column of ``Y`` at once.

    Args:
        X: ``[n, d]`` activations of one layer.
        Y: ``[n, t]`` targets (task and control columns side by side).
        masks: ``[P, n]`` bool, the train rows of each problem.
        alpha: L2 penalty (scikit-learn's ``Ridge(alpha)``).
        moments: ``ridge_moments(X, masks)`` when several label sets share ``X`` and ``masks``.

    Returns:
        ``LinearFits`` with ``coef [P, d, t]`` and ``intercept [P, t]``.
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
    eye = torch.eye(X.shape[1], dtype=torch.float64)
    # Gc + alpha I is symmetric positive definite: Cholesky, not a general LU solve (MKL's
    # batched LU once failed here intermittently, "Parameter 6 was incorrect on entry to DLASWP")
    coef = torch.cholesky_solve(XtY_c, torch.linalg.cholesky(Gc + alpha * eye))  # [P, d, t]
    intercept = y_means - torch.einsum("pd,pdt->pt", means, coef)
    return LinearFits(coef.numpy(), intercept.numpy())


@dataclass(frozen=True)
class Whitening:
    """Whitened coordinates of one layer's rows, shared by every logistic problem on them.

    Attributes:
        mean: ``[d]`` the rows' mean.
        basis: ``[d, r]``, ``V diag(lam)^-1/2`` over the non-null eigenvectors of the centred
            covariance: ``w = basis @ u``.
        Z: ``[n, r]`` the centred rows in that basis (unit-variance columns).
        inv_lam: ``[r]`` ``1 / lam``.
    """

    mean: torch.Tensor
    basis: torch.Tensor
    Z: torch.Tensor
    inv_lam: torch.Tensor


def whiten(X: np.ndarray) -> Whitening:
    """The ``Whitening`` of ``X [n, d]`` (float64: the solver must resolve changes far below
    float32's 1e-7; torch's eigh and GEMMs follow torch's thread setting, numpy's BLAS may not)."""
    Xd = torch.from_numpy(np.asarray(X, dtype=np.float64))
    mean = Xd.mean(dim=0)
    Xc = Xd - mean
    lam, V = torch.linalg.eigh(Xc.T @ Xc / len(Xd))
    keep = lam > max(float(lam.max()), 1e-300) * 1e-10
    lam, V = lam[keep], V[:, keep]
    basis = V / lam.sqrt()
    return Whitening(mean, basis, Xc @ basis, 1.0 / lam)


def logistic_fits(
    X: np.ndarray,
    y: np.ndarray,
    masks: np.ndarray,
    C: float,
    max_iter: int = 500,
    tol: float = 1e-5,
    n_classes: int = 2,
    whitening: Whitening | None = None,
) -> LinearFits:
    """L2 logistic regression for each (train mask, label vector) problem of one layer.

    Binary problems (``n_classes=2``) use one weight vector and the sigmoid, like
    scikit-learn's binary case; more classes use the multinomial (softmax) loss with all
    ``K`` weight vectors penalised, like scikit-learn's multinomial case.

    The problems are solved together by scipy's L-BFGS-B (an analytic gradient; no autograd,
    and no ``torch.optim``, whose first use imports ``torch._dynamo`` for seconds) in whitened
    coordinates: with the centred covariance ``V diag(lam) V'`` of all rows,
    ``w = V diag(lam)^-1/2 u`` is an exact change of variables (directions of zero variance carry
    no signal and get zero weight) under which the data term is well conditioned and the penalty ``||w||^2 = sum(u^2 / lam)`` is diagonal. Each
    problem's objective is scikit-learn's divided by ``C * n_train``; the intercept is free.

    Args:
        X: ``[n, d]`` activations of one layer.
        y: ``[P, n]`` integer labels in ``0..n_classes-1``, one row per problem.
        masks: ``[P, n]`` bool train rows of each problem.
        C: inverse regularisation (scikit-learn's convention).
        max_iter: L-BFGS iterations at most.
        tol: stop when the largest (preconditioned) gradient entry is below ``tol``, or when the
            summed objective's relative change falls below ``1e-13`` per problem.
        n_classes: number of classes ``K``.
        whitening: ``whiten(X)`` when several label sets share ``X`` (task, control task).

    Returns:
        ``LinearFits`` with ``coef [P, d, k]`` and ``intercept [P, k]``, ``k = 1`` for binary
        problems (the score of class 1) and ``k = K`` otherwise.
    """
    from scipy.optimize import minimize

    w = whitening if whitening is not None else whiten(X)
    Z, inv_lam = w.Z, w.inv_lam
    M = torch.from_numpy(np.asarray(masks, dtype=np.float64))  # [P, n]
    n_train = M.sum(dim=1)
    weight = M / n_train[:, None]  # [P, n]: each problem's mean over its train rows
    P, r = M.shape[0], Z.shape[1]
    k = 1 if n_classes == 2 else n_classes
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))  # [P, n]
    classes = torch.arange(1, 2) if k == 1 else torch.arange(n_classes)
    target = (labels[..., None] == classes).double()  # [P, n, k]: one-hot (binary: is class 1)
    # Diagonal preconditioner: in whitened coordinates the data term's Hessian is at most
    # ~I/4 while the penalty's is diag(1/lam)/(C n), stiff along low-variance directions;
    # optimising v = u / s with s = (1/4 + 1/(lam C n))^-1/2 evens the curvature out, without
    # changing the optimum.
    ridge = inv_lam[None, :, None] / (C * n_train[:, None, None])  # [P, r, 1]
    scale = (0.25 + ridge).rsqrt()
    n_u = P * r * k

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        xt = torch.from_numpy(x)
        u = xt[:n_u].view(P, r, k) * scale
        b = xt[n_u:].view(P, k)
        # one GEMM for every problem and class: [n, r] @ [r, P*k]
        z = (Z @ u.permute(1, 0, 2).reshape(r, P * k)).view(-1, P, k).permute(1, 0, 2)
        z = z + b[:, None, :]  # [P, n, k]
        if k == 1:
            sign = 1.0 - 2.0 * target[..., 0]  # +1 for class 0, -1 for class 1
            per_row = torch.nn.functional.softplus(sign * z[..., 0])
            dz = (torch.sigmoid(z) - target) * weight[..., None]
        else:
            lse = torch.logsumexp(z, dim=2)
            per_row = lse - (z * target).sum(dim=2)
            dz = (torch.softmax(z, dim=2) - target) * weight[..., None]
        value = (per_row * weight).sum() + 0.5 * (u * u * ridge).sum()
        # d/du: Z' dz per problem, as one GEMM [r, n] @ [n, P*k]
        grad_u = (Z.T @ dz.permute(1, 0, 2).reshape(-1, P * k)).view(r, P, k).permute(1, 0, 2)
        grad_u = grad_u + u * ridge
        grad = torch.cat([(grad_u * scale).reshape(-1), dz.sum(dim=1).reshape(-1)])
        return float(value), grad.numpy()

    x0 = np.zeros(n_u + P * k)
    fit = minimize(objective, x0, jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "maxcor": 20, "gtol": tol, "ftol": 1e-13 * P})
    xt = torch.from_numpy(fit.x)
    u = xt[:n_u].view(P, r, k) * scale
    coef = torch.einsum("dr,prk->pdk", w.basis, u).numpy()  # [P, d, k]
    intercept = xt[n_u:].view(P, k).numpy() - np.einsum("d,pdk->pk", w.mean.numpy(), coef)
    return LinearFits(coef, intercept, int(fit.nfev), float(np.abs(fit.jac).max()) <= 10 * tol)
