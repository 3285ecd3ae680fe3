"""Fast exact probe fits: many train sets and label sets of one layer at once.

A sweep fits, per layer, one probe per CV fold and per label set (task, control task), plus a
probe on all rows. Both solvers share the work between those problems:

- Ridge: closed form. Per-fold Gram matrices are the full Gram minus the held-out block's, so
  one pass over the data serves every fold and every label set (multi-target solve).
- Logistic (binary, L2, scikit-learn's objective ``C * sum(logloss) + ||w||^2 / 2``, intercept
  unpenalised): one eigendecomposition of the layer's covariance whitens the data for every
  problem, and L-BFGS solves all problems of the layer at once as matrix products. On raw
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


def _moments(X: torch.Tensor, masks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Counts ``[P]``, means ``[P, d]`` and centred Grams ``[P, d, d]`` (float64) of the rows
    selected by each mask ``[P, n]``, sharing work between complementary masks."""
    Xd = X.double()
    masks_t = torch.from_numpy(masks)
    counts = masks_t.sum(dim=1).double()
    sums = masks_t.double() @ Xd  # [P, d]
    full = bool(masks.all(axis=0).any()) or masks.sum(axis=1).max() > 0.5 * masks.shape[1]
    grams = []
    G_all = Xd.T @ Xd if full else None
    for m in masks_t:
        if G_all is not None and int(m.sum()) > 0.5 * len(m):
            rest = Xd[~m]
            grams.append(G_all - rest.T @ rest)
        else:
            sel = Xd[m]
            grams.append(sel.T @ sel)
    G = torch.stack(grams)
    means = sums / counts.clamp(min=1)[:, None]
    Gc = G - counts[:, None, None] * means[:, :, None] * means[:, None, :]
    return counts, means, Gc


def ridge_fits(X: np.ndarray, Y: np.ndarray, masks: np.ndarray, alpha: float) -> LinearFits:
    """Ridge with intercept for each train mask; every label column of ``Y`` at once.

    Args:
        X: ``[n, d]`` activations of one layer.
        Y: ``[n, t]`` targets (task and control columns side by side).
        masks: ``[P, n]`` bool, the train rows of each problem.
        alpha: L2 penalty (scikit-learn's ``Ridge(alpha)``).

    Returns:
        ``LinearFits`` with ``coef [P, d, t]`` and ``intercept [P, t]``.
    """
    Xt = torch.from_numpy(np.ascontiguousarray(X))
    Yt = torch.from_numpy(np.ascontiguousarray(Y, dtype=np.float64))
    counts, means, Gc = _moments(Xt, masks)
    m = torch.from_numpy(masks).double()
    y_means = (m @ Yt) / counts[:, None]  # [P, t]
    XtY = torch.einsum("pn,nd,nt->pdt", m, Xt.double(), Yt)
    XtY_c = XtY - counts[:, None, None] * means[:, :, None] * y_means[:, None, :]
    eye = torch.eye(X.shape[1], dtype=torch.float64)
    coef = torch.linalg.solve(Gc + alpha * eye, XtY_c)  # [P, d, t]
    intercept = y_means - torch.einsum("pd,pdt->pt", means, coef)
    return LinearFits(coef.numpy(), intercept.numpy())


def logistic_fits(
    X: np.ndarray,
    y: np.ndarray,
    masks: np.ndarray,
    C: float,
    max_iter: int = 500,
    tol: float = 1e-5,
    n_classes: int = 2,
) -> LinearFits:
    """L2 logistic regression for each (train mask, label vector) problem of one layer.

    Binary problems (``n_classes=2``) use one weight vector and the sigmoid, like
    scikit-learn's binary case; more classes use the multinomial (softmax) loss with all
    ``K`` weight vectors penalised, like scikit-learn's multinomial case.

    The problems are solved together by L-BFGS in whitened coordinates: with the centred
    covariance ``V diag(lam) V'`` of all rows, ``w = V diag(lam)^-1/2 u`` is an exact change of
    variables (directions of zero variance carry no signal and get zero weight) under which the
    data term is well conditioned and the penalty ``||w||^2 = sum(u^2 / lam)`` is diagonal. Each
    problem's objective is scikit-learn's divided by ``C * n_train``; the intercept is free.

    Args:
        X: ``[n, d]`` activations of one layer.
        y: ``[P, n]`` integer labels in ``0..n_classes-1``, one row per problem.
        masks: ``[P, n]`` bool train rows of each problem.
        C: inverse regularisation (scikit-learn's convention).
        max_iter: L-BFGS iterations at most.
        tol: stop when the largest gradient entry is below ``tol`` (or when the summed objective
            changes by less than ``1e-9`` per problem).

        n_classes: number of classes ``K``.

    Returns:
        ``LinearFits`` with ``coef [P, d, k]`` and ``intercept [P, k]``, ``k = 1`` for binary
        problems (the score of class 1) and ``k = K`` otherwise.
    """
    Xd = np.asarray(X, dtype=np.float64)
    mu = Xd.mean(axis=0)
    Xc = Xd - mu
    lam, V = np.linalg.eigh(Xc.T @ Xc / len(Xd))
    keep = lam > max(lam.max(), 1e-300) * 1e-10
    lam, V = lam[keep], V[:, keep]
    basis = V / np.sqrt(lam)  # [d, r]: w = basis @ u
    # float64: the objective must resolve changes far below float32's 1e-7 to converge
    Z = torch.from_numpy(Xc @ basis)  # [n, r], unit variance columns
    inv_lam = torch.from_numpy(1.0 / lam)
    M = torch.from_numpy(np.asarray(masks, dtype=np.float64))  # [P, n]
    Y = torch.from_numpy(np.asarray(y, dtype=np.float64))
    n_train = M.sum(dim=1)
    P, r = len(Y), Z.shape[1]
    k = 1 if n_classes == 2 else n_classes
    u = torch.zeros(P, r, k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(P, k, dtype=torch.float64, requires_grad=True)
    Y_long = torch.from_numpy(np.asarray(y, dtype=np.int64))  # [P, n]
    opt = torch.optim.LBFGS(
        [u, b], lr=1, max_iter=max_iter, history_size=20, tolerance_grad=tol,
        tolerance_change=1e-9 * P, line_search_fn="strong_wolfe",
    )
    evals = [0]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        evals[0] += 1
        # one GEMM for every problem and class: [n, r] @ [r, P*k]
        z = (Z @ u.permute(1, 0, 2).reshape(r, P * k)).reshape(-1, P, k).permute(1, 0, 2)
        z = z + b[:, None, :]  # [P, n, k]
        if k == 1:
            per_row = torch.nn.functional.softplus(torch.where(Y > 0.5, -z[..., 0], z[..., 0]))
        else:
            per_row = torch.logsumexp(z, dim=2) - z.gather(2, Y_long[..., None])[..., 0]
        loss = (per_row * M).sum(dim=1) / n_train
        penalty = (u * u * inv_lam[None, :, None]).sum(dim=(1, 2)) / (2 * C * n_train)
        objective = (loss + penalty).sum()
        objective.backward()
        return objective

    with torch.enable_grad():
        opt.step(closure)
    grad = torch.cat([u.grad.reshape(-1), b.grad.reshape(-1)]).abs().max().item()
    coef = np.einsum("dr,prk->pdk", basis, u.detach().double().numpy())  # [P, d, k]
    intercept = b.detach().double().numpy() - np.einsum("d,pdk->pk", mu, coef)
    return LinearFits(coef, intercept, evals[0], grad <= 10 * tol)
