//! What each role accepts of Arrow's types, and the conversions into the few types the pipeline
//! uses: UTC microsecond timestamps, Utf8 keys, and f64 numbers with nulls as NaN.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray};
use arrow::compute::{cast, cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};

use crate::time::Micros;

/// The role a column plays, which decides the types it may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnRole {
    /// Request time or label time.
    Time,
    /// Request id, entity or segment.
    Key,
    /// Label or model feature.
    Number,
}

/// Why a column's type does not fit its role; `None` when it fits.
pub fn type_problem(role: ColumnRole, data_type: &DataType) -> Option<(String, String)> {
    let ok = match role {
        ColumnRole::Time => matches!(data_type, DataType::Timestamp(..) | DataType::Date32 | DataType::Date64),
        ColumnRole::Key => is_text(data_type) || data_type.is_integer() || matches!(data_type, DataType::Boolean),
        ColumnRole::Number => data_type.is_numeric() || matches!(data_type, DataType::Boolean),
    };
    if ok {
        return None;
    }
    let (expected, fix) = match role {
        ColumnRole::Time => (
            "a timestamp or a date",
            "store it as a Parquet timestamp, e.g. pyarrow `pa.timestamp(\"us\", tz=\"UTC\")` or polars `.str.to_datetime()`",
        ),
        ColumnRole::Key => ("strings or integers", "cast it to strings"),
        ColumnRole::Number if is_text(data_type) => {
            ("numbers", "models take numbers: encode this column numerically (e.g. category codes) before replay, or pick another column")
        }
        ColumnRole::Number => ("numbers or booleans", "cast it to a numeric type"),
    };
    Some((format!("is {data_type}, expected {expected}"), fix.to_string()))
}

fn is_text(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_text(values),
        _ => false,
    }
}

/// A time column as UTC microseconds. Timestamps without a zone are taken as UTC; sub-microsecond
/// digits are truncated.
pub fn to_micros(array: &ArrayRef) -> Result<Vec<Option<Micros>>, String> {
    let tz = match array.data_type() {
        DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    };
    // Keep the zone: timestamps with a zone already count from the UTC epoch.
    let us = cast(array, &DataType::Timestamp(TimeUnit::Microsecond, tz)).map_err(|e| e.to_string())?;
    let raw = cast(&us, &DataType::Int64).map_err(|e| e.to_string())?;
    Ok(raw.as_primitive::<Int64Type>().iter().collect())
}

/// A key column as Utf8 strings (nulls stay null).
pub fn to_utf8(array: &ArrayRef) -> Result<ArrayRef, String> {
    if array.data_type() == &DataType::Utf8 {
        return Ok(array.clone());
    }
    let out = cast(array, &DataType::Utf8).map_err(|e| e.to_string())?;
    debug_assert!(out.as_any().downcast_ref::<StringArray>().is_some());
    Ok(out)
}

/// A numeric column as f64 with nulls (and anything unrepresentable) as NaN.
pub fn to_f64_nan(array: &ArrayRef) -> Result<Vec<f64>, String> {
    let floats = to_f64(array)?;
    let values = floats.values();
    if floats.null_count() == 0 {
        return Ok(values.to_vec());
    }
    Ok(floats.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// A numeric column as a nullable f64 array.
pub fn to_f64(array: &ArrayRef) -> Result<Float64Array, String> {
    let options = CastOptions { safe: true, ..Default::default() };
    let out = cast_with_options(array, &DataType::Float64, &options).map_err(|e| e.to_string())?;
    Ok(out.as_primitive::<Float64Type>().clone())
}

/// Builds a Utf8 array from owned strings (used for tests and small tables).
pub fn utf8(values: impl IntoIterator<Item = Option<String>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<StringArray>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BooleanArray, DictionaryArray, Int32Array, Int8Array, LargeStringArray, StringViewArray, TimestampNanosecondArray,
        TimestampSecondArray,
    };
    use arrow::datatypes::Int8Type;

    #[test]
    fn timestamps_of_any_unit_and_zone_become_utc_micros() {
        let ns: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![Some(1_500_000_999), None]).with_timezone("America/New_York"));
        assert_eq!(to_micros(&ns).unwrap(), vec![Some(1_500_000), None]);
        let s: ArrayRef = Arc::new(TimestampSecondArray::from(vec![3]));
        assert_eq!(to_micros(&s).unwrap(), vec![Some(3_000_000)]);
        let d: ArrayRef = Arc::new(arrow::array::Date32Array::from(vec![1]));
        assert_eq!(to_micros(&d).unwrap(), vec![Some(crate::time::MICROS_PER_DAY)]);
    }

    #[test]
    fn keys_of_any_string_encoding_or_integers_become_utf8() {
        let dict: ArrayRef = Arc::new(vec!["EWR", "JFK", "EWR"].into_iter().collect::<DictionaryArray<Int8Type>>());
        let large: ArrayRef = Arc::new(LargeStringArray::from(vec!["a", "b"]));
        let view: ArrayRef = Arc::new(StringViewArray::from(vec!["x"]));
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![Some(7), None]));
        let s = |a: &ArrayRef| to_utf8(a).unwrap().as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect::<Vec<_>>();
        assert_eq!(s(&dict), [Some("EWR".into()), Some("JFK".into()), Some("EWR".into())]);
        assert_eq!(s(&large), [Some("a".into()), Some("b".into())]);
        assert_eq!(s(&view), [Some("x".into())]);
        assert_eq!(s(&ints), [Some("7".into()), None]);
    }

    #[test]
    fn numbers_become_f64_with_nulls_as_nan() {
        let ints: ArrayRef = Arc::new(Int8Array::from(vec![Some(-3), None]));
        let out = to_f64_nan(&ints).unwrap();
        assert_eq!(out[0], -3.0);
        assert!(out[1].is_nan());
        let bools: ArrayRef = Arc::new(BooleanArray::from(vec![true, false]));
        assert_eq!(to_f64_nan(&bools).unwrap(), [1.0, 0.0]);
    }

    #[test]
    fn roles_accept_only_their_types() {
        assert!(type_problem(ColumnRole::Number, &DataType::Utf8).unwrap().1.contains("encode"));
        assert!(type_problem(ColumnRole::Number, &DataType::Float32).is_none());
        assert!(type_problem(ColumnRole::Time, &DataType::Int64).is_some());
        assert!(type_problem(ColumnRole::Key, &DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::LargeUtf8))).is_none());
    }
}
