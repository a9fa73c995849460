"""Lesson 6: a time series as a tabular problem, the Rossmann recipe (lesson6-rossmann, F3:8073-8987).

Rossmann's store sales cannot be bundled, so this runs the same code on a real dated table that
can: daily entries at 20 Chicago 'L' stations, 2001-2016, with the day's weather and Chicago
sports games (`untar_data(URLs.CHICAGO_RIDERSHIP)`, from R's modeldata, MIT). The steps are the
lesson's, with `from deftly.tabular import *`: drop the closed days (Rossmann drops Sales == 0;
here days under 100 entries), `add_datepart` (plus a Holiday flag, Rossmann's StateHoliday), the last weeks as validation (Rossmann's `cut`),
a log target with `label_cls=FloatList, log=True`, `y_range` up to 1.2 x the largest value,
`tabular_learner(layers=[1000,500], ps=[0.001,0.01], emb_drop=0.04, metrics=exp_rmspe)` and
`fit_one_cycle(epochs, 1e-3, wd=0.2)`.

The last line compares with the naive forecast of each station's median for that weekday:

    lesson6_rossmann_like: exp_rmspe=0.xxx station_weekday_median=0.xxx

    python examples/lesson6_rossmann_like.py --since 2014 --epochs 1
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from pandas.tseries.holiday import USFederalHolidayCalendar  # noqa: E402

from deftly.tabular import *  # noqa: E402,F403  (the course's import line)


def main(argv: list[str] | None = None) -> tuple[float, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("out/lesson6_rossmann_like"))
    p.add_argument("--since", default="2001-01-01", help="use the days from this date on (fewer rows)")
    p.add_argument("--valid-days", type=int, default=56, help="the last VALID_DAYS days validate")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--layers", default="1000,500", help="hidden sizes, comma-separated (the lesson's 1000,500)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    set_seed(42)

    path = untar_data(URLs.CHICAGO_RIDERSHIP)
    rides = pd.read_csv(path/'ridership.csv')
    weather = pd.read_csv(path/'weather.csv')
    train_df = rides[(rides.rides >= 100) & (rides.date >= args.since)].merge(weather, on='date', how='left')
    train_df = train_df.sort_values(['date', 'station']).reset_index(drop=True)
    print(f"{len(train_df):,} station-days, {train_df.date.min()} to {train_df.date.max()}")

    add_datepart(train_df, "date", drop=False)
    # Rossmann's table has StateHoliday; this one gets the US federal holidays (July 4th empties the Loop)
    holidays = USFederalHolidayCalendar().holidays(train_df.date.min(), train_df.date.max())
    train_df['Holiday'] = train_df.date.isin(holidays)
    print(train_df.head().T.head(20))

    cat_vars = ['station', 'Dayofweek', 'Year', 'Month', 'Day', 'Week', 'Is_month_end', 'Is_month_start', 'Holiday',
                'Blackhawks_Home', 'Bulls_Home', 'Bears_Home', 'WhiteSox_Home', 'Cubs_Home',
                'Blackhawks_Away', 'Bulls_Away', 'Bears_Away', 'WhiteSox_Away', 'Cubs_Away']
    cont_vars = ['temp_min', 'temp', 'temp_max', 'temp_change', 'dew', 'humidity', 'pressure', 'wind', 'gust',
                 'percip', 'weather_rain', 'weather_snow', 'weather_cloud', 'weather_storm', 'Elapsed']
    dep_var = 'rides'
    df = train_df[cat_vars + cont_vars + [dep_var, 'date']].copy()

    cut = df['date'].max() - pd.Timedelta(days=args.valid_days)
    valid_idx = np.flatnonzero(df['date'] > cut)
    procs = [FillMissing, Categorify, Normalize]

    data = (TabularList.from_df(df, path=path, cat_names=cat_vars, cont_names=cont_vars, procs=procs)
                       .split_by_idx(valid_idx)
                       .label_from_df(cols=dep_var, label_cls=FloatList, log=True)
                       .databunch(bs=args.bs))
    print(f"train {len(data.train_ds):,} rows, valid {len(data.valid_ds):,} rows; "
          f"cont_names {data.train_ds.cont_names}")
    data.show_batch(rows=5)

    max_log_y = np.log(np.max(train_df['rides'])*1.2)
    y_range = torch.tensor([0, max_log_y], device=defaults.device)

    layers = [int(n) for n in args.layers.split(',')]
    learn = tabular_learner(data, layers=layers, ps=[0.001,0.01], emb_drop=0.04,
                            y_range=y_range, metrics=exp_rmspe, path=args.out)
    print(learn.model)
    learn.fit_one_cycle(args.epochs, args.lr, wd=0.2)
    fig = learn.recorder.plot_losses(return_fig=True)
    fig.savefig(args.out / "losses.png", dpi=80)

    row = df.iloc[valid_idx[0]]
    _, log_rides, _ = learn.predict(row)
    print(f"predict({row['station']} {row['date'].date()}) -> {float(np.exp(float(log_rides))):.0f} rides; "
          f"actual {row[dep_var]}")

    score = float(learn.validate()[1])
    train, valid = df.drop(index=valid_idx), df.iloc[valid_idx]
    medians = train.groupby(['station', 'Dayofweek'])[dep_var].median().rename('guess')
    guess = valid.join(medians, on=['station', 'Dayofweek'])['guess'].to_numpy(dtype=float)
    actual = valid[dep_var].to_numpy(dtype=float)
    naive = float(np.sqrt(np.mean(((actual - guess) / actual) ** 2)))
    print(f"lesson6_rossmann_like: exp_rmspe={score:.3f} station_weekday_median={naive:.3f}")
    return score, naive


if __name__ == "__main__":
    main()
