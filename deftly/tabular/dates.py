"""Date features and column typing for tables (v1's `add_datepart`, `add_cyclic_datepart`,
`cont_cat_split`): a date becomes columns a model can use (day of week, month end, ...), so many
time series can be treated as plain tabular problems (lesson 6)."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from deftly.core.errors import DataError

__all__ = ["add_cyclic_datepart", "add_datepart", "cont_cat_split", "make_date"]


def make_date(df: pd.DataFrame, date_field: str) -> pd.DataFrame:
    """Make column `date_field` of `df` a datetime column in place (parsing text); a DataError
    names the column and shows values that are not dates."""
    if date_field not in df.columns:
        raise DataError(f"no column {date_field!r} in the table; its columns are {list(df.columns)}")
    col = df[date_field]
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        col = col.dt.tz_localize(None)
    if not pd.api.types.is_datetime64_any_dtype(col):
        parsed = pd.to_datetime(col, errors="coerce")
        bad = parsed.isna() & col.notna()
        if bad.any():
            shown = ", ".join(repr(v) for v in pd.unique(col[bad])[:5])
            raise DataError(f"column {date_field!r} holds values that are not dates: {shown}",
                            where=f"column {date_field!r}")
        col = parsed
    df[date_field] = col
    return df


def _prefix(field_name: str, prefix: str | None) -> str:
    return re.sub("[Dd]ate$", "", field_name) if prefix is None else prefix


def add_datepart(df: pd.DataFrame, field_name: str, prefix: str | None = None, drop: bool = True,
                 time: bool = False) -> pd.DataFrame:
    """Add Year, Month, Week, Day, Dayofweek, Dayofyear, Is_month_end, Is_month_start,
    Is_quarter_end, Is_quarter_start, Is_year_end, Is_year_start and Elapsed (seconds since 1970)
    columns for date column `field_name`, named `prefix + attr` (default prefix: the field name
    without a trailing 'Date'); with `time`, also Hour, Minute, Second. Works in place, returns `df`."""
    make_date(df, field_name)
    field = df[field_name]
    pre = _prefix(field_name, prefix)
    dt = field.dt
    parts = {
        "Year": dt.year, "Month": dt.month, "Week": dt.isocalendar().week.astype("Int64" if field.isna().any() else "int64"),
        "Day": dt.day, "Dayofweek": dt.day_of_week, "Dayofyear": dt.day_of_year,
        "Is_month_end": dt.is_month_end, "Is_month_start": dt.is_month_start,
        "Is_quarter_end": dt.is_quarter_end, "Is_quarter_start": dt.is_quarter_start,
        "Is_year_end": dt.is_year_end, "Is_year_start": dt.is_year_start,
    }
    if time:
        parts.update(Hour=dt.hour, Minute=dt.minute, Second=dt.second)
    for name, values in parts.items():
        df[pre + name] = values
    seconds = (field - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    df[pre + "Elapsed"] = seconds
    if drop:
        del df[field_name]  # in place, as the course expects
    return df


def _cyclic(frac: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    angle = 2 * np.pi * frac.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.cos(angle), np.sin(angle)


def add_cyclic_datepart(df: pd.DataFrame, field_name: str, prefix: str | None = None, drop: bool = True,
                        time: bool = False, add_linear: bool = False) -> pd.DataFrame:
    """Add cos/sin columns placing date column `field_name` on the cycles of the week, month, year
    (`weekday`, `day_month`, `month_year`, `day_year`; with `time`, also `hour`, `clock`, `min`,
    `sec`), so December sits next to January; `add_linear` adds `year_lin` (year plus fraction of
    the year). Works in place, returns `df`."""
    make_date(df, field_name)
    field = df[field_name]
    pre = _prefix(field_name, prefix)
    dt = field.dt
    days_in_year = np.where(dt.is_leap_year, 366, 365)
    fracs = {
        "weekday": dt.day_of_week / 7,
        "day_month": (dt.day - 1) / dt.days_in_month,
        "month_year": (dt.month - 1) / 12,
        "day_year": (dt.day_of_year - 1) / days_in_year,
    }
    if time:
        fracs.update({"hour": dt.hour / 24, "clock": (dt.hour % 12) / 12,
                      "min": dt.minute / 60, "sec": dt.second / 60})
    for name, frac in fracs.items():
        cos, sin = _cyclic(frac)
        df[f"{pre}{name}_cos"], df[f"{pre}{name}_sin"] = cos, sin
    if add_linear:
        df[f"{pre}year_lin"] = dt.year + (dt.day_of_year - 1) / days_in_year
    if drop:
        del df[field_name]  # in place, as the course expects
    return df


def cont_cat_split(df: pd.DataFrame, max_card: int = 20, dep_var: str | None = None) -> tuple[list[str], list[str]]:
    """(cont_names, cat_names): float columns and integer columns with more than `max_card` distinct
    values are continuous; every other column (text, bool, low-cardinality integers) is categorical.
    `dep_var` is left out of both (v1's rule and return order)."""
    cont_names, cat_names = [], []
    for name in df.columns:
        if name == dep_var:
            continue
        col = df[name]
        is_int = pd.api.types.is_integer_dtype(col) and not pd.api.types.is_bool_dtype(col)
        if pd.api.types.is_float_dtype(col) or (is_int and col.nunique() > max_card):
            cont_names.append(name)
        else:
            cat_names.append(name)
    return cont_names, cat_names
