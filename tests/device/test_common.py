"""--check compares an integer output as integer codes: a tolerance of K quantization steps accepts exactly K,
whatever the float rounding of the dequantized logits (two steps once computed as 0.0475688 against a
difference of 0.0475689 and failed)."""
from __future__ import annotations

import numpy as np
import pytest

from edgeincep.device.common import deviation, output_codes


def _logits(codes: np.ndarray, scale: float, zero_point: int) -> list[float]:
    # exactly what the runner's dequantize gives: (q - zero_point) * scale in float32
    return [float(v) for v in (codes.astype(np.float32) - zero_point) * np.float32(scale)]


@pytest.mark.parametrize("seed", range(20))
def test_codes_come_back_exactly_and_k_steps_pass_while_k_plus_one_fail(seed):
    rng = np.random.default_rng(seed)
    scale, zero_point = float(np.float32(rng.uniform(1e-3, 0.5))), int(rng.integers(-128, 128))
    host = rng.integers(-128, 128, 10)
    np.testing.assert_array_equal(output_codes(_logits(host, scale, zero_point), scale, zero_point), host)
    tol = {"output_steps": 2, "scale": scale, "zero_point": zero_point}
    for shift, ok in ((0, True), (1, True), (2, True), (-2, True), (3, False), (-3, False)):
        device = host.copy()
        device[int(rng.integers(10))] += shift
        assert deviation(tol, _logits(device, scale, zero_point), _logits(host, scale, zero_point)) == (abs(shift), ok)


def test_float_tolerances_and_top1_only_still_work():
    assert deviation(0.5, [1.0, 2.0], [1.2, 2.0]) == pytest.approx((0.2, True))
    assert deviation(0.1, [1.0, 2.0], [1.2, 2.0])[1] is False
    assert deviation(None, [1.0, 9.0], [1.2, 2.0])[1] is True
