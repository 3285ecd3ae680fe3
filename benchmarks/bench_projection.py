"""Time and peak memory of PCA / UMAP / t-SNE projections at d_model 576.

Each (method, rows) runs in a fresh subprocess so its peak RSS is its own. The data are float32
Gaussian clusters in a 64-dimensional subspace of R^576 plus isotropic noise (a stand-in with
the width and low effective rank of SmolLM2 hidden states; generating 100k real rows would take
an hour of extraction on this machine).

    python benchmarks/bench_projection.py                       # 10k and 100k, pca and umap;
                                                                # t-SNE at 10k
    python benchmarks/bench_projection.py --rows 10000 --methods pca,umap,tsne
    python benchmarks/bench_projection.py --rows 10000 --methods tsne,tsne_sklearn  # openTSNE
                                                                # vs scikit-learn Barnes-Hut
    python benchmarks/bench_projection.py --rows 10000 --methods tsne,tsne_grid2,tsne_sklearn

``tsne_grid2`` is ``TSNEProjection(ints_in_interval=2)`` (a coarser FFT grid). t-SNE rows also
report the map's quality, untimed: trustworthiness and 10-NN preservation against the 576-d
rows.

``tsne_sklearn`` is what a user would otherwise write (and what ``TSNEProjection`` ran before
it moved to openTSNE): the same PCA-50 pre-reduction, then ``sklearn.manifold.TSNE``
(Barnes-Hut, perplexity 30, 1000 iterations, PCA init, ``learning_rate="auto"``, one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

D_MODEL = 576


def make_data(n: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(D_MODEL, 64)))[0].T.astype(np.float32)  # [64, 576]
    centres = rng.normal(scale=4.0, size=(20, 64)).astype(np.float32)
    labels = rng.integers(0, 20, n)
    X = np.empty((n, D_MODEL), dtype=np.float32)
    for start in range(0, n, 10_000):  # chunked: no float64 temporaries of the whole array
        sl = slice(start, min(start + 10_000, n))
        z = centres[labels[sl]] + rng.normal(size=(sl.stop - sl.start, 64)).astype(np.float32)
        X[sl] = z @ basis + 0.3 * rng.normal(size=(sl.stop - sl.start, D_MODEL)).astype(np.float32)
    return X


def _quality(X, Y, k: int = 10) -> dict:
    """How well the 2-D map keeps the neighbourhoods of the 576-d rows (not timed):
    scikit-learn's trustworthiness, and the share of each row's k nearest neighbours in X
    that are among its k nearest in the map (kNN preservation); both exact, k = 10."""
    import numpy as np
    from sklearn.manifold import trustworthiness
    from sklearn.neighbors import NearestNeighbors

    near = [
        NearestNeighbors(n_neighbors=k + 1).fit(A).kneighbors(A, return_distance=False)[:, 1:]
        for A in (X, Y)
    ]
    kept = np.mean([len(set(a) & set(b)) / k for a, b in zip(*near, strict=True)])
    return {
        "trustworthiness_10": round(float(trustworthiness(X, Y, n_neighbors=k)), 4),
        "knn10_preserved": round(float(kept), 4),
    }


def one(method: str, n: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from workbench.projection import make_projection

    X = make_data(n)
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if method == "tsne_sklearn":
        from sklearn.manifold import TSNE

        from workbench.projection import PCAProjection

        t, cpu = time.perf_counter(), time.process_time()
        Z = PCAProjection(50, random_state=0).fit_transform(X)
        Y = TSNE(
            2,
            perplexity=30.0,
            init="pca",
            max_iter=1000,
            random_state=0,
            method="barnes_hut",
            learning_rate="auto",
            n_jobs=1,
        ).fit_transform(Z)
    else:
        params = {"ints_in_interval": 2.0} if method == "tsne_grid2" else {}
        est = make_projection(method.removesuffix("_grid2"), 2, **params)
        t, cpu = time.perf_counter(), time.process_time()
        Y = est.fit_transform(X)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the quality
    quality = _quality(X, Y) if method.startswith("tsne") else {}
    return {
        **quality,
        "method": method,
        "rows": n,
        "d_model": D_MODEL,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "peak_rss_mb": round(peak),
        "rss_after_data_mb": round(rss_data),
        "shape": list(Y.shape),
        "threads": os.environ.get("OMP_NUM_THREADS"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="10000,100000")
    ap.add_argument("--methods", default="pca,umap,tsne")
    ap.add_argument(
        "--tsne-max-rows",
        type=int,
        default=10000,
        help="skip t-SNE above this many rows (Barnes-Hut on 2 cores is slow)",
    )
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "ROWS"), help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help="append JSON lines here")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    print(
        "| method | rows | d_model | wall s | CPU s | peak RSS (MB) | trustworthiness | "
        "10-NN kept |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    for n in [int(r) for r in args.rows.split(",")]:
        for method in args.methods.split(","):
            if method.startswith("tsne") and n > args.tsne_max_rows:
                continue
            out = subprocess.run(
                [sys.executable, __file__, "--one", method, str(n)],
                env=env,
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                print(f"| {method} | {n} | {D_MODEL} | failed: {out.stderr[-300:]!r} | | |")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"| {method} | {n} | {D_MODEL} | {r['seconds']} | {r['cpu_seconds']} | "
                f"{r['peak_rss_mb']} | {r.get('trustworthiness_10', '')} | "
                f"{r.get('knn10_preserved', '')} |",
                flush=True,
            )
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
