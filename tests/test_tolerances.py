"""The tolerance helper every numeric test states its bounds with."""
import numpy as np
import pytest
import torch
from tolerances import assert_within_ulps, ulps_of


@pytest.mark.parametrize("value", [118.4, 0.5, 1.0, 3e-39, 0.0, -640.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_one_ulp_is_the_spacing_of_the_largest_magnitude(value, dtype):
    values = np.array([value / 4, value], dtype=dtype)
    assert ulps_of(values, 1) == np.spacing(np.abs(values).max())
    assert ulps_of(torch.from_numpy(values), 3) == 3 * np.spacing(np.abs(values).max())


def test_ulps_of_another_type_and_of_nothing():
    assert ulps_of(np.float32(118.0), 2, dtype=torch.bfloat16) == 2 * 0.5  # 8 significant bits: 128 > 118 >= 64
    assert ulps_of(torch.zeros(0), 4) == 4 * torch.finfo(torch.float32).eps * torch.finfo(torch.float32).tiny


def test_the_bound_is_inclusive_and_names_the_excess():
    expected = np.array([118.0, -3.0], np.float32)
    assert_within_ulps(expected + np.array([2 * 7.62939453125e-06, 0], np.float32), expected, 2)
    with pytest.raises(AssertionError, match="over 2 ulps of 118"):
        assert_within_ulps(expected + np.array([3 * 7.62939453125e-06, 0], np.float32), expected, 2)
    with pytest.raises(AssertionError):
        assert_within_ulps(np.array([np.nan, -3.0], np.float32), expected, 2)
