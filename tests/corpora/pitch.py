"""A pitch estimate for the synthesizer tests: do the pitch settings move the voice?"""

from __future__ import annotations

import numpy as np


def f0(clip: np.ndarray, rate: int = 16000) -> float:
    """Median autocorrelation pitch (Hz, 60-300 Hz) of a clip's loud 40 ms frames."""
    x, n = clip.astype(np.float64), 640
    frames = [x[i:i + n] for i in range(0, len(x) - n, n) if np.abs(x[i:i + n]).mean() > 0.3 * np.abs(x).mean()]
    lags = np.arange(rate // 300, rate // 60)
    picks = [lags[np.argmax([f[:-lag] @ f[lag:] for lag in lags])] for f in frames]
    return rate / float(np.median(picks))
