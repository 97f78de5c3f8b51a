//! An external sort for a log file that is not sorted by time (`traffic.sort = true`): the file's
//! needed columns are read in runs of at most [`RUN_ROWS`] rows, each run is sorted by time (a
//! stable sort: ties keep the file's order) and written as a Parquet file, and the runs are then
//! read as files that overlap in time — merged by time like any such files. Memory is one run.
//!
//! Runs are kept in the tool's cache under `sorted/<key>/`, where the key hashes the file's bytes,
//! the time column, the window and the columns kept, so a second run reuses them and a changed
//! file can never reuse stale runs. The folder is written under a temporary name and renamed
//! when complete.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;

use super::{data_error, decode, open_file, to_micros, Layout, TrafficFile};
use crate::atomic::Pending;
use crate::error::{Error, Result};
use crate::scenario::Traffic;
use crate::storage::Place;

/// Rows sorted in memory at once.
pub const RUN_ROWS: usize = 1 << 20;

/// The sorted runs of `file`, made (or found in `cache`) for `layout`'s columns.
pub fn sorted_runs(file: &TrafficFile, traffic: &Traffic, layout: &Layout, cache: &Path, run_rows: usize) -> Result<Vec<TrafficFile>> {
    let columns = projected(file, layout);
    let names: Vec<&str> = columns.iter().map(|&c| file.schema().field(c).name().as_str()).collect();
    let key =
        format!("{}|{}|{:?}|{:?}|{}|{run_rows}", file.path.content_hash()?, traffic.time, traffic.start, traffic.end, names.join(","));
    let dir = cache.join("sorted").join(&blake3::hash(key.as_bytes()).to_hex()[..32]);
    if !dir.is_dir() {
        std::fs::create_dir_all(cache.join("sorted")).map_err(|e| Error::io(cache.join("sorted"), e))?;
        crate::atomic::sweep_stale(&cache.join("sorted"), |_| true);
        let pending = Pending::new(&dir);
        std::fs::create_dir_all(pending.path()).map_err(|e| Error::io(pending.path(), e))?;
        write_runs(file, traffic, &columns, pending.path(), run_rows)?;
        if let Err(e) = pending.commit() {
            // Another process sorted the same file meanwhile: its runs are the same.
            if !dir.is_dir() {
                return Err(e);
            }
        }
    }
    let mut runs: Vec<PathBuf> =
        std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    runs.sort();
    runs.iter()
        .map(|path| open_file(Place::Local(path.clone()), &traffic.time).map_err(Error::invalid))
        .map(|f| {
            f.map(|mut f| {
                f.partitions = file.partitions.clone();
                f
            })
        })
        .collect()
}

/// The file's columns the layout reads.
fn projected(file: &TrafficFile, layout: &Layout) -> Vec<usize> {
    let mut columns: Vec<usize> = layout.columns().iter().filter_map(|(_, name, _)| file.schema().index_of(name).ok()).collect();
    columns.sort_unstable();
    columns.dedup();
    columns
}

fn write_runs(file: &TrafficFile, traffic: &Traffic, columns: &[usize], dir: &Path, run_rows: usize) -> Result<()> {
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut rows = 0;
    let mut index = 0;
    for batch in decode::Guarded::open(file, traffic, columns.to_vec(), run_rows.min(65_536))? {
        let batch = batch?;
        rows += batch.num_rows();
        pending.push(batch);
        if rows >= run_rows {
            write_run(file, traffic, &std::mem::take(&mut pending), &dir.join(format!("run-{index:06}.parquet")))?;
            (rows, index) = (0, index + 1);
        }
    }
    if rows > 0 {
        write_run(file, traffic, &pending, &dir.join(format!("run-{index:06}.parquet")))?;
    }
    Ok(())
}

/// Sorts `batches` by time (stably) and writes them as one Parquet file.
fn write_run(file: &TrafficFile, traffic: &Traffic, batches: &[RecordBatch], dest: &Path) -> Result<()> {
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => return Ok(()),
    };
    let batch = arrow::compute::concat_batches(&schema, batches).map_err(|e| Error::failed("sorting a traffic run by time", e))?;
    let times = to_micros(batch.column_by_name(&traffic.time).expect("the time column is read")).map_err(|e| data_error(&file.path, e))?;
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    // Rows without a time sort last; the survey has already refused them.
    order.sort_by_key(|&i| times[i as usize].unwrap_or(i64::MAX));
    let sorted = arrow::compute::take_record_batch(&batch, &arrow::array::UInt32Array::from(order))
        .map_err(|e| Error::failed("sorting a traffic run by time", e))?;
    let out = File::create(dest).map_err(|e| Error::io(dest, e))?;
    let mut writer = ArrowWriter::try_new(out, schema, None).map_err(|e| Error::failed("writing a sorted traffic run", e))?;
    writer.write(&sorted).map_err(|e| Error::failed("writing a sorted traffic run", e))?;
    writer.close().map_err(|e| Error::failed("writing a sorted traffic run", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;
    use crate::ingest::{Batches, Rules};
    use crate::scenario::Duplicates;

    #[test]
    fn an_unsorted_file_is_read_in_time_order_through_sorted_runs() {
        let dir = tempfile::tempdir().unwrap();
        // 2,000 requests in a shuffled order (a fixed permutation), with ties every 5 requests.
        let order: Vec<i64> = (0..2000).map(|i| (i * 769) % 2000).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Timestamp(TimeUnit::Microsecond, None), false),
            Field::new("id", DataType::Int64, false),
        ]));
        let times = TimestampMicrosecondArray::from(order.iter().map(|i| i / 5 * crate::time::MICROS_PER_SECOND).collect::<Vec<_>>());
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(times), Arc::new(Int64Array::from(order.clone()))]).unwrap();
        let path = dir.path().join("shuffled.parquet");
        let mut writer = ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();

        let traffic = Traffic {
            path: crate::storage::Location::Local(path.clone()),
            time: "t".into(),
            entity: "id".into(),
            id: "id".into(),
            label: None,
            label_time: None,
            label_delay: 0,
            segments: Vec::new(),
            start: None,
            end: None,
            duplicates: Duplicates::Error,
            sort: true,
            max_segment_values: 100,
        };
        let layout = Layout::new(&traffic, Vec::new());
        let file = open_file(Place::Local(path.clone()), "t").unwrap();
        let runs = sorted_runs(&file, &traffic, &layout, dir.path(), 300).unwrap();
        assert_eq!(runs.len(), 7, "2,000 rows in runs of 300");
        let again = sorted_runs(&file, &traffic, &layout, dir.path(), 300).unwrap();
        assert_eq!(
            again.iter().map(|r| &r.path).collect::<Vec<_>>(),
            runs.iter().map(|r| &r.path).collect::<Vec<_>>(),
            "the runs are reused"
        );

        let rules = Rules::default();
        let mut seen: Vec<(i64, i64)> = Vec::new();
        for batch in Batches::new(&runs, &traffic, &layout, &rules, 128) {
            let batch = batch.unwrap();
            let ids = batch.id.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
            seen.extend(batch.time.iter().zip(0..ids.len()).map(|(t, i)| (*t, ids.value(i).parse::<i64>().unwrap())));
        }
        assert_eq!(seen.len(), 2000);
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "merged in time order");
        let mut ids: Vec<i64> = seen.iter().map(|(_, id)| *id).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..2000).collect::<Vec<_>>(), "every request once");
    }
}
