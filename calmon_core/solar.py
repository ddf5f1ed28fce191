"""The sun's elevation at a site and time, for the lighting regime of a check (day, dusk, night)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

DAY_ABOVE_DEG, NIGHT_BELOW_DEG = 6.0, -6.0  # civil twilight between: dusk


def sun_elevation_deg(when: datetime, latitude: float, longitude: float) -> float:
    """Solar elevation (NOAA's low-precision formulas, good to ~0.5 deg; enough for regimes)."""
    when = when.astimezone(UTC)
    day = when.timetuple().tm_yday
    hours = when.hour + when.minute / 60 + when.second / 3600
    g = 2 * math.pi / 365 * (day - 1 + (hours - 12) / 24)
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * math.cos(g)
        - 0.032077 * math.sin(g)
        - 0.014615 * math.cos(2 * g)
        - 0.040849 * math.sin(2 * g)
    )
    decl = (
        0.006918
        - 0.399912 * math.cos(g)
        + 0.070257 * math.sin(g)
        - 0.006758 * math.cos(2 * g)
        + 0.000907 * math.sin(2 * g)
        - 0.002697 * math.cos(3 * g)
        + 0.00148 * math.sin(3 * g)
    )
    solar_minutes = hours * 60 + eqtime + 4 * longitude
    hour_angle = math.radians(solar_minutes / 4 - 180)
    lat = math.radians(latitude)
    cos_zenith = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(hour_angle)
    return 90.0 - math.degrees(math.acos(max(-1.0, min(1.0, cos_zenith))))


def regime_at(when: datetime, latitude: float, longitude: float) -> str:
    """'day' above +6 deg of sun elevation, 'night' below -6 deg, 'dusk' between."""
    elev = sun_elevation_deg(when, latitude, longitude)
    return "day" if elev >= DAY_ABOVE_DEG else "night" if elev <= NIGHT_BELOW_DEG else "dusk"
