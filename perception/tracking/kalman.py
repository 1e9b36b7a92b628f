"""norfair's Kalman filter, able to carry a track's uncertainty through the frames it was not matched in.

norfair's ``OptimizedKalmanFilter`` predicts a track's state on every frame but grows its covariance only in an
update, and then as for one frame: a track matched again after k frames weighs the new box as if it had been seen
one frame before. Where the detector does not take every frame (at its pace, :meth:`ObjectTracker.
update_at_detector_pace`: the node, `gdino bag`; at a stride, ``update`` with period > 1) every update follows frames
the tracker stepped through unseen. :class:`CarriedKalmanFilter` counts the frames predicted since its last update
and, when the tracker asks it to (``carry``, set on every track before each update by :func:`carry_uncertainty`),
carries the covariance over all k of them, as a textbook constant-velocity filter does: the position variance grows
by 2k times the position-velocity covariance and k squared times the velocity variance, the covariance by k times
the velocity variance, and the process noise is added k times. Without ``carry`` (or with k = 1) it is norfair's
filter to the bit.

The tracker asks for it after frames the detector skipped, with ``TrackerConfig.kalman_carry`` (the default; the
crowd model's tuned settings turn it off). On noisy truth of real 25 fps trajectories (tuning seeds 0 and 1000) it
made fewer identity switches at every pace tried (1-4 frames between runs: 160 against 178; 3-12: 155 against 176;
10-30: 86 against 102) and at strides 3 and 6 (127 against 157, 223 against 268), with a higher IDF1. Carried also
between consecutive frames the detector took (over the frames a track was missed), it lost IDF1 on the crowd model's
crowd boxes (recordings 2230000, 2240000 at stride 1: 0.791, 0.801 against 0.800, 0.808), so updates one frame
after the detector's previous run keep norfair's. Fresh figures: the config's comment and the README's tracking
section.
"""
from __future__ import annotations

import numpy as np
from norfair.filter import OptimizedKalmanFilter, OptimizedKalmanFilterFactory


class CarriedKalmanFilter(OptimizedKalmanFilter):
    """``OptimizedKalmanFilter`` whose update may carry the covariance over every frame since the last one."""

    carry = False  # the coming update carries the covariance over the frames since the last one
    frames = 0  # frames predicted since the last update

    def predict(self) -> None:
        super().predict()
        self.frames += 1

    def update(self, detection_points_flatten, R=None, H=None) -> None:
        # norfair's update, in its order of operations so that k = 1 gives its figures exactly, with the
        # covariance carried over k frames.
        k = max(self.frames, 1) if self.carry else 1
        self.frames = 0
        if H is not None:
            diagonal = np.diagonal(H).reshape((self.dim_z, 1))
            one_minus_diagonal = 1 - diagonal
        else:
            diagonal = np.ones((self.dim_z, 1))
            one_minus_diagonal = np.zeros((self.dim_z, 1))
        kalman_r = self.default_r if R is None else np.diagonal(R).reshape((self.dim_z, 1))
        error = np.multiply(detection_points_flatten - self.x[: self.dim_z], diagonal)
        covariance = self.pos_vel_covariance + k * self.vel_variance
        noise = k * self.q_Q
        added = self.pos_variance + k * self.pos_vel_covariance + k * covariance + noise + kalman_r
        position_gain = 1 - np.divide(kalman_r, added)
        velocity_gain = np.divide(covariance, added)
        added_or_r = np.multiply(added, one_minus_diagonal) + np.multiply(kalman_r, diagonal)
        self.x[: self.dim_z] += np.multiply(diagonal, np.multiply(position_gain, error))
        self.x[self.dim_z:] += np.multiply(diagonal, np.multiply(velocity_gain, error))
        self.pos_variance = np.multiply(position_gain, added_or_r)
        self.pos_vel_covariance = np.multiply(velocity_gain, added_or_r)
        self.vel_variance += noise - np.multiply(diagonal, np.multiply(np.square(velocity_gain), added))


class CarriedKalmanFilterFactory(OptimizedKalmanFilterFactory):
    """norfair's ``OptimizedKalmanFilterFactory`` (same R, Q and initial covariance), making CarriedKalmanFilters."""

    def create_filter(self, initial_detection: np.ndarray) -> CarriedKalmanFilter:
        dim_z = initial_detection.size
        created = CarriedKalmanFilter(2 * dim_z, dim_z, pos_variance=self.pos_variance,
                                      pos_vel_covariance=self.pos_vel_covariance, vel_variance=self.vel_variance,
                                      q=self.Q, r=self.R)
        created.x[:dim_z] = initial_detection.reshape(dim_z, 1)
        return created


def carry_uncertainty(objects: list, carry: bool) -> None:
    """Whether each norfair object's filter carries its covariance over its unmatched frames in the coming update."""
    for obj in objects:
        if isinstance(obj.filter, CarriedKalmanFilter):
            obj.filter.carry = carry


def rescale_steps(state_filter, ratio: float) -> None:
    """Make a norfair filter's state count steps ``ratio`` times as short (the tracker now stepping ``ratio`` times
    as often): its velocity, in pixels per step, and the covariances that involve it (position-velocity once,
    velocity twice) shrink by ``ratio``, and a CarriedKalmanFilter's count of frames since its update grows by it.
    A filter without velocity ("none") is left as it is."""
    if not isinstance(state_filter, OptimizedKalmanFilter):
        return
    state_filter.x[state_filter.dim_z:] /= ratio
    state_filter.pos_vel_covariance /= ratio
    state_filter.vel_variance /= ratio * ratio
    if isinstance(state_filter, CarriedKalmanFilter):
        state_filter.frames = round(state_filter.frames * ratio)
