"""The calibrators of NVIDIA pytorch-quantization / ModelOpt, in numpy.

- max: the largest |x| seen.
- histogram methods, over one histogram of |x| (2048 bins from 0 to the first
  batch's max, widened by whole bins when a later batch exceeds it):
  - percentile: the bin edge where the cumulative count reaches p%.
  - mse: the bin center minimizing the count-weighted squared error of
    fake-quantizing the bin centers (candidates from bin 128 on).
  - entropy: the TensorRT KL-divergence rule: for each candidate bin i >= 128,
    the clipped reference distribution against its 128-level re-quantization;
    the last minimum wins; amax is that bin's edge.
These follow ModelOpt's `HistogramCalibrator` (its torch.histc path)
definition for definition; tests compare them on the same tensors.

ModelOpt 0.47's `_compute_amax_mse` calls `fake_tensor_quant(centers, amax,
num_bits, unsigned)` positionally while that function's third parameter is now
`bias`, so its MSE rule subtracts 8 from the centers and quantizes with 0 bits
(it then returns the first candidate whatever the data). We implement the rule
as pytorch-quantization defined it; the test patches that one call to keywords
and gets ModelOpt's algorithm to agree with ours exactly.
"""

from __future__ import annotations

import math

import numpy as np

METHODS = ("max", "percentile", "mse", "entropy")
NUM_BINS = 2048
START_BIN = 128


class MaxCalibrator:
    """Running max of |x|."""

    def __init__(self) -> None:
        self.amax: float | None = None

    def collect(self, x: np.ndarray) -> None:
        if x.size:
            m = float(np.max(np.abs(x)))
            self.amax = m if self.amax is None else max(self.amax, m)

    def compute_amax(self) -> float:
        if self.amax is None:
            raise ValueError("the calibrator saw no data")
        return self.amax


class HistogramCalibrator:
    """Histogram of |x| collected over batches; `compute_amax(method)` applies a rule."""

    def __init__(self, num_bins: int = NUM_BINS) -> None:
        self.num_bins = num_bins
        self.hist: np.ndarray | None = None
        self.edges: np.ndarray | None = None

    def collect(self, x: np.ndarray) -> None:
        x = np.abs(np.asarray(x, np.float32)).reshape(-1)
        if not x.size:
            return
        x_max = np.float32(x.max())
        if self.hist is None or self.edges is None:
            self.hist = _histc(x, self.num_bins, np.float32(0), x_max)
            self.edges = np.linspace(0, x_max, self.num_bins + 1, dtype=np.float32)
            return
        edges = self.edges
        if x_max > edges[-1]:  # widen by whole bins of the original width
            width = edges[1] - edges[0]
            self.num_bins = int(math.ceil(x_max / width))
            self.edges = edges = np.arange(0, x_max + width, width, dtype=np.float32)
        hist = _histc(x, self.num_bins, np.float32(0), edges[-1])
        hist[: self.hist.size] += self.hist
        self.hist = hist

    def compute_amax(self, method: str, *, percentile: float = 99.99) -> float:
        if self.hist is None or self.edges is None:
            raise ValueError("the calibrator saw no data")
        if method == "percentile":
            return percentile_amax(self.hist, self.edges, percentile)
        if method == "mse":
            return mse_amax(self.hist, self.edges)
        if method == "entropy":
            return entropy_amax(self.hist, self.edges)
        raise ValueError(f"unknown histogram method {method!r}; known: percentile, mse, entropy")


def _histc(x: np.ndarray, bins: int, low: np.float32, high: np.float32) -> np.ndarray:
    """torch.histc: equal bins over [low, high], the top edge in the last bin, outside values dropped."""
    if high <= low:
        hist = np.zeros(bins, np.float64)
        hist[0] = np.count_nonzero(x == low)
        return hist
    inside = x[(x >= low) & (x <= high)]
    idx = ((inside - low) * np.float32(bins) / (high - low)).astype(np.int64)
    np.minimum(idx, bins - 1, out=idx)
    return np.bincount(idx, minlength=bins).astype(np.float64)


def percentile_amax(hist: np.ndarray, edges: np.ndarray, percentile: float) -> float:
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile={percentile} must be in [0, 100]")
    cdf = np.cumsum(hist / hist.sum())
    return float(edges[np.searchsorted(cdf, percentile / 100)])


def _fake_quant_int8(x: np.ndarray, amax: np.ndarray) -> np.ndarray:
    scale = np.float32(127.0) / amax
    return np.clip(np.round(x * scale), -127, 127) / scale


def mse_amax(hist: np.ndarray, edges: np.ndarray, start_bin: int = START_BIN) -> float:
    counts = hist.astype(np.float32)
    centers = ((edges[1:] + edges[:-1]) / 2).astype(np.float32)
    candidates = centers[start_bin : len(centers)]
    if not candidates.size:
        return float(edges[-1])
    # Chunked over candidates to bound memory: [chunk, bins].
    mses = []
    for lo in range(0, len(candidates), 256):
        amax = candidates[lo : lo + 256, None]
        err = (_fake_quant_int8(centers[None, :], amax) - centers[None, :]) ** 2
        mses.append((err * counts[None, :]).mean(axis=1))
    return float(candidates[int(np.argmin(np.concatenate(mses)))])


def entropy_amax(hist: np.ndarray, edges: np.ndarray, start_bin: int = START_BIN, num_bits: int = 8) -> float:
    bins = hist.astype(np.float64).copy()
    bins[0] = bins[1]  # as TensorRT/ModelOpt: the zero bin is not trusted
    nlevels = 1 << (num_bits - 1)
    stop = len(bins)
    if stop < start_bin:
        return float(edges[-1])
    divergences = np.empty(stop - start_bin + 1)
    for n, i in enumerate(range(start_bin, stop + 1)):
        space = np.linspace(0, i, num=nlevels + 1)
        level = np.digitize(np.arange(i), space) - 1
        nonzero = bins[:i] != 0
        level_sum = np.bincount(level[nonzero], weights=bins[:i][nonzero], minlength=nlevels)
        level_cnt = np.bincount(level[nonzero], minlength=nlevels)
        density = np.where(nonzero, level_sum[level] / np.maximum(level_cnt[level], 1), 0.0)
        reference = bins[:i].copy()
        reference[-1] += bins[i:].sum()
        divergences[n] = _kl(reference, density)
    last_argmin = len(divergences) - 1 - int(np.argmin(divergences[::-1]))
    return float(edges[last_argmin + start_bin])


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """scipy.stats.entropy(p, q): both normalized; inf where p > 0 and q == 0."""
    p = p / p.sum()
    qs = q.sum()
    if qs == 0:
        return math.inf
    q = q / qs
    mask = p > 0
    if np.any(q[mask] == 0):
        return math.inf
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def make_calibrator(method: str):
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; known: {METHODS}")
    return MaxCalibrator() if method == "max" else HistogramCalibrator()
