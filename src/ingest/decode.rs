//! Decoding a user's Parquet file without trusting it: a damaged data page (the footer intact) can
//! make the Parquet decoder panic instead of returning an error. Every read of traffic data goes
//! through [`Guarded`], which decodes each batch inside [`contained`] (a panic becomes an error at
//! the batch boundary) and then [`locate`]s the row group and column that cannot be decoded, so the
//! message names them and the run ends with exit 2, never a crash.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use super::TrafficFile;
use crate::error::{Error, Problem};
use crate::scenario::Traffic;

thread_local! {
    /// Set while this thread decodes inside [`contained`]: its panics are expected and quiet.
    static DECODING: Cell<bool> = const { Cell::new(false) };
    /// The message of the last panic [`contained`] caught on this thread.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `step`, which decodes a user's data; a panic inside it becomes `Err(message)` and is not
/// printed. Panics anywhere else are reported as before.
pub fn contained<T>(step: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if DECODING.with(Cell::get) {
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the decoder failed".to_string());
                CAUGHT.with(|c| *c.borrow_mut() = Some(message));
            } else {
                previous(info);
            }
        }));
    });
    let was = DECODING.with(|d| d.replace(true));
    let result = catch_unwind(AssertUnwindSafe(step));
    DECODING.with(|d| d.set(was));
    result.map_err(|_| CAUGHT.with(|c| c.borrow_mut().take()).unwrap_or_else(|| "the decoder failed".to_string()))
}

/// A reader of some columns of a user's file, over the row groups that may hold requests in the
/// window: every batch is decoded inside [`contained`], and a failure is named by its row group
/// and column ([`damaged`]).
pub struct Guarded<'f> {
    file: &'f TrafficFile,
    reader: ParquetRecordBatchReader,
    groups: Vec<usize>,
    columns: Vec<usize>,
    /// Rows read so far, to find the row group that failed.
    rows: i64,
}

impl<'f> Guarded<'f> {
    /// Opens `file` to read its root `columns` (sorted, without repeats) in batches of `batch_rows`.
    pub fn open(file: &'f TrafficFile, traffic: &Traffic, columns: Vec<usize>, batch_rows: usize) -> crate::error::Result<Self> {
        let handle = file.path.open()?;
        let groups = file.row_groups_in(traffic);
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(handle, file.metadata.clone())
            .with_projection(ProjectionMask::roots(file.metadata.parquet_schema(), columns.iter().copied()))
            .with_row_groups(groups.clone())
            .with_batch_size(batch_rows)
            .build()
            .map_err(|e| super::data_error(&file.path, e))?;
        Ok(Self { file, reader, groups, columns, rows: 0 })
    }

    /// The index in the file of the first row read (row groups before the window are skipped).
    pub fn first_row(&self) -> i64 {
        let before = self.groups.first().copied().unwrap_or(0);
        (0..before).map(|g| self.file.metadata.metadata().row_group(g).num_rows()).sum()
    }

    /// The row groups from the one holding the next row to read on (a batch may span several).
    fn groups_at_failure(&self) -> &[usize] {
        let mut before = 0;
        for (i, &g) in self.groups.iter().enumerate() {
            before += self.file.metadata.metadata().row_group(g).num_rows();
            if before > self.rows {
                return &self.groups[i..];
            }
        }
        &self.groups
    }
}

impl Iterator for Guarded<'_> {
    type Item = crate::error::Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let failure = match contained(|| self.reader.next()) {
            Ok(None) => return None,
            Ok(Some(Ok(batch))) => {
                self.rows += batch.num_rows() as i64;
                return Some(Ok(batch));
            }
            Ok(Some(Err(e))) => e.to_string(),
            Err(panic) => panic,
        };
        Some(Err(damaged(self.file, self.groups_at_failure(), &self.columns, &failure)))
    }
}

/// The first (row group, column) among `groups` × `columns` (root column indices of the file's
/// schema) that cannot be decoded, each read alone. Only called after a read failed.
pub fn locate(file: &TrafficFile, groups: &[usize], columns: &[usize]) -> Option<(usize, String, String)> {
    for &group in groups {
        for &column in columns {
            let attempt = contained(|| -> Result<(), String> {
                let handle = file.path.open().map_err(|e| e.to_string())?;
                let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(handle, file.metadata.clone())
                    .with_projection(ProjectionMask::roots(file.metadata.parquet_schema(), [column]))
                    .with_row_groups(vec![group])
                    .build()
                    .map_err(|e| e.to_string())?;
                for batch in reader {
                    batch.map_err(|e| e.to_string())?;
                }
                Ok(())
            });
            if let Err(message) | Ok(Err(message)) = attempt {
                return Some((group, file.schema().field(column).name().clone(), message));
            }
        }
    }
    None
}

/// The error for data of `file` that cannot be decoded: the row group and column when [`locate`]
/// finds them among `groups` × `columns`, else the file alone.
pub fn damaged(file: &TrafficFile, groups: &[usize], columns: &[usize], message: &str) -> Error {
    let fix = "the file is damaged (a data page cannot be decoded): re-export it from its source, or leave it out of traffic.path";
    let problem = match locate(file, groups, columns) {
        Some((group, column, detail)) => Problem::new(
            format!("{}: row group {group}, column \"{column}\"", file.path.display()),
            format!("cannot decode the data: {detail}"),
        ),
        None => Problem::new(file.path.display().to_string(), format!("cannot decode the data: {message}")),
    };
    Error::invalid(problem.fix(fix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_is_an_error_and_the_thread_goes_on() {
        let caught = contained(|| -> u32 { panic!("index out of bounds: the len is 3 but the index is 7") });
        assert_eq!(caught, Err("index out of bounds: the len is 3 but the index is 7".to_string()));
        let formatted = contained(|| -> u32 { panic!("bit width {}", 65) });
        assert_eq!(formatted, Err("bit width 65".to_string()));
        assert_eq!(contained(|| 5), Ok(5));
        assert!(!DECODING.with(Cell::get), "outside, panics are reported as before");
    }
}
