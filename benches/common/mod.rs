//! What the benchmarks that write logs share.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchReader};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The whole Parquet file at `source` as one batch, each column cast to the type `plain` gives
/// its field (dictionary columns as plain strings: concatenating batches would overflow their
/// int8 keys).
pub fn read_whole(source: &Path, plain: impl Fn(&Field) -> Field) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(source).unwrap()).unwrap().build().unwrap();
    let schema = Arc::new(Schema::new(reader.schema().fields().iter().map(|f| plain(f)).collect::<Vec<_>>()));
    let batches: Vec<RecordBatch> = reader
        .map(|b| {
            let b = b.unwrap();
            let columns = b.columns().iter().zip(schema.fields()).map(|(c, f)| cast(c, f.data_type()).unwrap()).collect();
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        })
        .collect();
    concat_batches(&schema, &batches).unwrap()
}
