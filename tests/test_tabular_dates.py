"""Date features and column typing on the bundled Chicago ridership table (real dates, 2001-2016)."""
import numpy as np
import pandas as pd
import pytest

from deftly.core.errors import DataError
from deftly.tabular import add_cyclic_datepart, add_datepart, cont_cat_split

V1_PARTS = ["Year", "Month", "Week", "Day", "Dayofweek", "Dayofyear", "Is_month_end", "Is_month_start",
            "Is_quarter_end", "Is_quarter_start", "Is_year_end", "Is_year_start", "Elapsed"]


@pytest.fixture(scope="module")
def chicago(data_home):
    """ridership.csv (date, station, rides) and weather.csv of the bundled Chicago sample."""
    path = data_home["chicago"]
    return pd.read_csv(path / "ridership.csv"), pd.read_csv(path / "weather.csv")


def test_add_datepart_columns_and_values(chicago):
    rides, _ = chicago
    df = rides.iloc[:2000].copy()
    out = add_datepart(df, "date", drop=False)
    assert out is df
    assert list(df.columns) == ["date", "station", "rides", *V1_PARTS]  # prefix: 'date' minus 'date'
    first = df[df["date"] == "2001-01-22"].iloc[0]  # a Monday in ISO week 4
    assert (first.Year, first.Month, first.Week, first.Day, first.Dayofweek, first.Dayofyear) == (2001, 1, 4, 22, 0, 22)
    assert first.Elapsed == 980121600  # seconds since 1970-01-01, as v1's int64 // 10**9
    dates = pd.to_datetime(df["date"])
    np.testing.assert_array_equal(df["Is_month_end"].to_numpy(), dates.dt.is_month_end.to_numpy())
    assert df["Is_month_start"].any() and df["Is_month_end"].any()
    assert (np.diff(df["Elapsed"].to_numpy()[df["station"] == df["station"].iloc[0]]) % 86400 == 0).all()


def test_add_datepart_prefix_drop_and_time():
    df = pd.DataFrame({"SaleDate": ["2015-07-31 13:45:10", "2016-02-29 00:00:01"], "y": [1, 2]})
    add_datepart(df, "SaleDate", time=True)
    assert "SaleDate" not in df.columns  # drop=True by default
    assert [c for c in df.columns if c != "y"] == ["Sale" + p for p in V1_PARTS[:-1]] + \
        ["SaleHour", "SaleMinute", "SaleSecond", "SaleElapsed"]
    assert df["SaleHour"].tolist() == [13, 0] and df["SaleSecond"].tolist() == [10, 1]
    assert df["SaleIs_month_end"].tolist() == [True, True]
    assert df["SaleIs_quarter_end"].tolist() == [False, False]


def test_add_datepart_names_bad_dates_and_missing_column():
    df = pd.DataFrame({"date": ["2015-07-31", "last tuesday"]})
    with pytest.raises(DataError, match=r"'date' holds values that are not dates: 'last tuesday'"):
        add_datepart(df, "date")
    with pytest.raises(DataError, match=r"no column 'Date'.*\['date'\]"):
        add_datepart(df, "Date")


def test_add_cyclic_datepart_on_real_dates(chicago):
    rides, _ = chicago
    df = rides.iloc[:500].copy()
    add_cyclic_datepart(df, "date", add_linear=True)
    names = [f"{r}_{f}" for r in ("weekday", "day_month", "month_year", "day_year") for f in ("cos", "sin")]
    assert list(df.columns) == ["station", "rides", *names, "year_lin"]
    for r in ("weekday", "day_month", "month_year", "day_year"):
        np.testing.assert_allclose(df[f"{r}_cos"] ** 2 + df[f"{r}_sin"] ** 2, 1.0, atol=1e-12)
    monday = df.iloc[0]  # 2001-01-22
    assert monday.weekday_cos == pytest.approx(1.0) and monday.weekday_sin == pytest.approx(0.0, abs=1e-12)
    assert monday.year_lin == pytest.approx(2001 + 21 / 365)


def test_cont_cat_split_on_the_weather_table(chicago):
    rides, weather = chicago
    df = weather.merge(rides.iloc[:3000], on="date")
    add_datepart(df, "date")
    cont, cat = cont_cat_split(df, max_card=20, dep_var="rides")
    assert "rides" not in cont + cat
    assert {"temp", "humidity", "Elapsed", "Dayofyear"} <= set(cont)  # floats, many-valued ints
    assert {"station", "Month", "Dayofweek", "Cubs_Home", "Is_month_end"} <= set(cat)  # text, few values, bools
    assert set(cont) | set(cat) == set(df.columns) - {"rides"}
