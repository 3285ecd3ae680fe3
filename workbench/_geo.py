"""Distances on the Earth, shared by probe metrics and lat/long figures."""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_KM = 6371.0088


def great_circle_km(lat_lon_a: np.ndarray, lat_lon_b: np.ndarray) -> np.ndarray:
    """Haversine distance in km between ``[n, 2]`` (latitude, longitude) arrays in degrees."""
    lat1, lon1 = np.radians(lat_lon_a[:, 0]), np.radians(lat_lon_a[:, 1])
    lat2, lon2 = np.radians(np.clip(lat_lon_b[:, 0], -90, 90)), np.radians(lat_lon_b[:, 1])
    h = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0, 1)))
