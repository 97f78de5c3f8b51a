//! A cheap first pass over the key columns only — time, id and segments — before anything is
//! scored: every request has a time and each file is sorted by it; which files overlap in time
//! (one file per server or stream partition: they are merged by time); how many requests fall in
//! the window; which ids repeat; how many values each segment column has. These errors cost
//! seconds, not a scoring pass, and progress can show an ETA.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, AsArray};
use serde::Serialize;

use super::duplicates::{id_hash, HashRuns};
use super::{decode, to_micros, to_utf8, TrafficFile};
use crate::error::{Error, Problem, Result};
use crate::scenario::{Duplicates, Traffic, OTHER};
use crate::time::{format_timestamp, Micros};

/// Distinct values counted per segment column before further new values are counted together.
const MAX_COUNTED_VALUES: usize = 1 << 20;

/// What the key columns say about one file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FileSurvey {
    pub file: String,
    pub rows: i64,
    /// Requests in the window, duplicates included.
    pub rows_in_window: u64,
    /// First and last request time in the window.
    #[serde(skip)]
    pub span: Option<(Micros, Micros)>,
    /// Whether the file is sorted by time (else `traffic.sort = true` sorts it before it is read).
    #[serde(skip)]
    pub sorted: bool,
}

/// Files read together, merged by time: one file, or files whose requests overlap in time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Group {
    /// Indices into the files, by first request time, then name.
    pub files: Vec<usize>,
    /// Requests replayed from the group: in the window, duplicates dropped.
    pub rows: u64,
}

/// One segment column's values.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SegmentValues {
    pub column: String,
    /// Distinct values in the window (at least this many, when more than can be counted).
    pub values: u64,
    /// Values judged one by one; the rest are judged together as "(other)".
    pub kept: u64,
    /// Requests whose value is judged as "(other)".
    pub other_rows: u64,
}

/// How rows are cleaned on their way in: values beyond the kept ones become "(other)", and the
/// later copies of a duplicated id are dropped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(into = "RulesRecord", from = "RulesRecord")]
pub struct Rules {
    /// Per segment column, the values kept (`None`: all of them).
    pub kept: Vec<Option<HashSet<String>>>,
    /// Ids seen more than once, whose first request alone is replayed (`traffic.duplicates = "keep_first"`).
    pub duplicated: HashSet<String>,
    /// For one class k of a multiclass model: labels are read as 1 where they equal k, else 0.
    pub positive_class: Option<f64>,
}

impl Rules {
    /// The segment value as replayed.
    pub fn segment<'v>(&self, column: usize, value: &'v str) -> &'v str {
        match &self.kept[column] {
            Some(kept) if !kept.contains(value) => OTHER,
            _ => value,
        }
    }

    pub fn is_identity(&self) -> bool {
        self.kept.iter().all(Option::is_none) && self.duplicated.is_empty() && self.positive_class.is_none()
    }

    /// A stable description for the score cache's key: what the rules change.
    pub fn key(&self) -> Option<String> {
        if self.is_identity() {
            return None;
        }
        let mut parts: Vec<String> = self.kept.iter().map(|k| k.as_ref().map(|k| sorted(k).join("\u{1f}")).unwrap_or_default()).collect();
        parts.push(sorted(&self.duplicated).join("\u{1f}"));
        parts.extend(self.positive_class.map(|k| format!("class {k}")));
        Some(blake3::hash(parts.join("\u{1e}").as_bytes()).to_hex().to_string())
    }
}

/// [`Rules`] as a shard plan stores them: sets as sorted lists, so a plan is the same bytes each time.
#[derive(Serialize, serde::Deserialize)]
struct RulesRecord {
    kept: Vec<Option<Vec<String>>>,
    duplicated: Vec<String>,
    positive_class: Option<f64>,
}

impl From<Rules> for RulesRecord {
    fn from(r: Rules) -> Self {
        let list = |set: &HashSet<String>| sorted(set).into_iter().map(str::to_string).collect();
        RulesRecord {
            kept: r.kept.iter().map(|k| k.as_ref().map(list)).collect(),
            duplicated: list(&r.duplicated),
            positive_class: r.positive_class,
        }
    }
}

impl From<RulesRecord> for Rules {
    fn from(r: RulesRecord) -> Self {
        Rules {
            kept: r.kept.into_iter().map(|k| k.map(|k| k.into_iter().collect())).collect(),
            duplicated: r.duplicated.into_iter().collect(),
            positive_class: r.positive_class,
        }
    }
}

fn sorted(set: &HashSet<String>) -> Vec<&str> {
    let mut v: Vec<&str> = set.iter().map(String::as_str).collect();
    v.sort_unstable();
    v
}

/// What the key columns say about the whole log.
#[derive(Debug, Clone, PartialEq)]
pub struct Survey {
    pub files: Vec<FileSurvey>,
    /// The files as they are read, in time order.
    pub groups: Vec<Group>,
    /// Requests replayed: in the window, duplicates dropped.
    pub rows_in_window: u64,
    /// First and last request time in the window.
    pub first: Micros,
    pub last: Micros,
    /// Later copies of ids seen before (dropped with `keep_first`).
    pub duplicates: u64,
    pub segments: Vec<SegmentValues>,
    pub rules: Rules,
}

impl Survey {
    /// The files that are not sorted by time (only with `traffic.sort = true`).
    pub fn unsorted(&self) -> Vec<usize> {
        (0..self.files.len()).filter(|&i| !self.files[i].sorted && self.files[i].rows_in_window > 0).collect()
    }

    /// Reads the files `by` instead of file `index` (its sorted runs), in its group.
    pub fn replace_file(&mut self, index: usize, by: std::ops::Range<usize>) {
        for group in &mut self.groups {
            if let Some(at) = group.files.iter().position(|&f| f == index) {
                group.files.splice(at..=at, by.clone());
            }
        }
    }
}

/// A repeated id: where its first and second request are.
struct Repeat {
    first: (usize, i64),
    second: Option<(usize, i64)>,
    groups: Vec<usize>,
}

pub fn survey(files: &[TrafficFile], traffic: &Traffic) -> Result<Survey> {
    let mut hashes = HashRuns::default();
    let mut counts: Vec<HashMap<String, u64>> = vec![HashMap::new(); traffic.segments.len()];
    let mut uncounted = vec![0u64; traffic.segments.len()];
    let mut out = Vec::new();
    // Every time read, in the window or not: where the data is when the window misses it.
    let mut seen: Option<(Micros, Micros)> = None;
    for file in files {
        let mut in_window = 0u64;
        let mut span: Option<(Micros, Micros)> = None;
        let mut previous: Option<Micros> = None;
        let mut sorted = true;
        read_keys(file, traffic, |row, t, id, segments| {
            let Some(t) = t else {
                return Err(Error::invalid(
                    Problem::new(
                        format!("{}: column \"{}\"", file.path.display(), traffic.time),
                        format!("row {row} has no request time (null)"),
                    )
                    .fix("drop or fill requests without a time before replaying"),
                ));
            };
            if let Some(p) = previous.filter(|p| t < *p) {
                if !traffic.sort {
                    return Err(unsorted(file, &traffic.time, row, t, p));
                }
                sorted = false;
            }
            previous = Some(t);
            seen = Some(seen.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
            if !traffic.in_window(t) {
                return Ok(());
            }
            in_window += 1;
            span = Some(span.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
            if !id.is_empty() {
                hashes.push(id_hash(id))?;
            }
            for ((counts, uncounted), value) in counts.iter_mut().zip(&mut uncounted).zip(segments) {
                if let Some(n) = counts.get_mut(*value) {
                    *n += 1;
                } else if counts.len() < MAX_COUNTED_VALUES {
                    counts.insert(value.to_string(), 1);
                } else {
                    *uncounted += 1;
                }
            }
            Ok(())
        })?;
        out.push(FileSurvey { file: file.path.display().to_string(), rows: file.rows(), rows_in_window: in_window, span, sorted });
    }
    let mut groups = group(files, &out);
    let (first, last) = match (out.iter().filter_map(|f| f.span).map(|s| s.0).min(), out.iter().filter_map(|f| f.span).map(|s| s.1).max()) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err(empty(files, traffic, seen)),
    };
    let repeated = hashes.repeated()?;
    let repeats =
        if repeated.is_empty() { HashMap::new() } else { find_repeats(files, traffic, &groups, &repeated.into_iter().collect())? };
    let duplicates: u64 = repeats.values().map(|r| r.groups.len() as u64 - 1).sum();
    if duplicates > 0 && traffic.duplicates == Duplicates::Error {
        return Err(duplicate_error(files, traffic, &repeats, duplicates));
    }
    for repeat in repeats.values() {
        let first = *repeat.groups.iter().min().expect("a repeat has requests");
        for g in &repeat.groups {
            groups[*g].rows -= 1;
        }
        groups[first].rows += 1;
    }
    let (segments, kept) = segment_values(traffic, counts, &uncounted);
    let rules = Rules { kept, duplicated: repeats.into_keys().collect(), positive_class: None };
    let rows_in_window = groups.iter().map(|g| g.rows).sum();
    Ok(Survey { files: out, groups, rows_in_window, first, last, duplicates, segments, rules })
}

/// Reads the time, id and segment columns of the row groups in the window, calling `row` with
/// each row's index in the file, time, id and segment values.
fn read_keys(file: &TrafficFile, traffic: &Traffic, mut row: impl FnMut(i64, Option<Micros>, &str, &[&str]) -> Result<()>) -> Result<()> {
    let schema = file.schema();
    let names: Vec<&String> = [&traffic.time, &traffic.id].into_iter().chain(&traffic.segments).collect();
    let mut columns: Vec<usize> = names.iter().filter_map(|n| schema.index_of(n).ok()).collect();
    columns.sort_unstable();
    columns.dedup();
    let mut reader = decode::Guarded::open(file, traffic, columns, 65_536)?;
    let mut index = reader.first_row();
    for batch in reader.by_ref() {
        let batch = batch?;
        let bad = |name: &str, e: String| Error::invalid(Problem::new(format!("{}: column \"{name}\"", file.path.display()), e));
        let key = |name: &str| -> Result<arrow::array::ArrayRef> {
            let column = file.column(&batch, name).expect("a key column is read or a partition key");
            to_utf8(&column).map_err(|e| bad(name, e))
        };
        let times = to_micros(batch.column_by_name(&traffic.time).expect("the time column is read")).map_err(|e| bad(&traffic.time, e))?;
        let ids = key(&traffic.id)?;
        let ids = ids.as_string::<i32>();
        let segments = traffic.segments.iter().map(|s| key(s)).collect::<Result<Vec<_>>>()?;
        let segments: Vec<&arrow::array::StringArray> = segments.iter().map(|a| a.as_string::<i32>()).collect();
        let mut values: Vec<&str> = Vec::with_capacity(segments.len());
        for (i, t) in times.into_iter().enumerate() {
            values.clear();
            values.extend(segments.iter().map(|s| if s.is_valid(i) { s.value(i) } else { "" }));
            row(index, t, if ids.is_valid(i) { ids.value(i) } else { "" }, &values)?;
            index += 1;
        }
    }
    Ok(())
}

/// Files read together: by first request, then name; a file starting before the files so far
/// have ended overlaps them and joins their group.
fn group(files: &[TrafficFile], surveyed: &[FileSurvey]) -> Vec<Group> {
    let mut order: Vec<usize> = (0..files.len()).filter(|i| surveyed[*i].span.is_some()).collect();
    order.sort_by(|a, b| surveyed[*a].span.cmp(&surveyed[*b].span).then_with(|| files[*a].path.cmp(&files[*b].path)));
    let mut groups: Vec<Group> = Vec::new();
    let mut end = Micros::MIN;
    for i in order {
        let (start, stop) = surveyed[i].span.expect("only files with requests");
        match groups.last_mut() {
            Some(g) if start < end => g.files.push(i),
            _ => groups.push(Group { files: vec![i], rows: 0 }),
        }
        let g = groups.last_mut().expect("a group");
        g.rows += surveyed[i].rows_in_window;
        end = end.max(stop);
    }
    groups
}

/// The ids among `hashes` that really repeat, with where they are.
fn find_repeats(files: &[TrafficFile], traffic: &Traffic, groups: &[Group], hashes: &HashSet<u64>) -> Result<HashMap<String, Repeat>> {
    let mut seen: HashMap<String, Repeat> = HashMap::new();
    for (g, group) in groups.iter().enumerate() {
        for &f in &group.files {
            read_keys(&files[f], traffic, |row, t, id, _| {
                if !id.is_empty() && t.is_some_and(|t| traffic.in_window(t)) && hashes.contains(&id_hash(id)) {
                    let repeat = seen.entry(id.to_string()).or_insert(Repeat { first: (f, row), second: None, groups: Vec::new() });
                    if !repeat.groups.is_empty() && repeat.second.is_none() {
                        repeat.second = Some((f, row));
                    }
                    repeat.groups.push(g);
                }
                Ok(())
            })?;
        }
    }
    seen.retain(|_, r| r.groups.len() > 1);
    Ok(seen)
}

fn duplicate_error(files: &[TrafficFile], traffic: &Traffic, repeats: &HashMap<String, Repeat>, duplicates: u64) -> Error {
    let (id, repeat) = repeats.iter().min_by_key(|(id, r)| (r.second, id.as_str())).expect("there are duplicates");
    let at = |(f, row): (usize, i64)| format!("row {row} of {}", files[f].name());
    let second = repeat.second.map(at).unwrap_or_default();
    Error::invalid(
        Problem::new(
            format!("{}: column \"{}\"", traffic.path.display(), traffic.id),
            format!("{duplicates} request(s) repeat an id seen before; the first: \"{id}\" at {} and again at {second}", at(repeat.first)),
        )
        .fix("remove the duplicates from the log, or set traffic.duplicates = \"keep_first\" to replay the first request of each id"),
    )
}

/// Per segment column: how many values, and which are kept (the most requests first, then by
/// value) when there are more than `traffic.max_segment_values`.
fn segment_values(
    traffic: &Traffic,
    counts: Vec<HashMap<String, u64>>,
    uncounted: &[u64],
) -> (Vec<SegmentValues>, Vec<Option<HashSet<String>>>) {
    let mut out = Vec::new();
    let mut kept = Vec::new();
    for ((column, counts), uncounted) in traffic.segments.iter().zip(counts).zip(uncounted) {
        let values = counts.len() as u64 + u64::from(*uncounted > 0);
        if counts.len() <= traffic.max_segment_values && *uncounted == 0 {
            out.push(SegmentValues { column: column.clone(), values, kept: values, other_rows: 0 });
            kept.push(None);
            continue;
        }
        let mut ranked: Vec<(String, u64)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let other_rows = ranked[traffic.max_segment_values.min(ranked.len())..].iter().map(|(_, n)| n).sum::<u64>() + uncounted;
        ranked.truncate(traffic.max_segment_values);
        out.push(SegmentValues { column: column.clone(), values, kept: ranked.len() as u64, other_rows });
        kept.push(Some(ranked.into_iter().map(|(v, _)| v).collect()));
    }
    (out, kept)
}

/// No request in the window: where the data is, or that there is none.
fn empty(files: &[TrafficFile], traffic: &Traffic, seen: Option<(Micros, Micros)>) -> Error {
    if traffic.start.is_none() && traffic.end.is_none() {
        let names: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
        let (location, what) = match names.as_slice() {
            [one] => (one.clone(), "has no rows".to_string()),
            _ => (
                format!("traffic.path = \"{}\"", traffic.path.display()),
                format!("names {} files and none has a row: {}", names.len(), names.join(", ")),
            ),
        };
        return Error::invalid(
            Problem::new(location, what)
                .fix("point traffic.path at the log with the requests to replay (`canary-replay inspect PATH` profiles a log)"),
        );
    }
    let window =
        format!("{} .. {}", traffic.start.map_or("(open)".into(), format_timestamp), traffic.end.map_or("(open)".into(), format_timestamp));
    // Row groups outside the window are not read: their statistics say where they are.
    let statistics = files.iter().flat_map(|f| f.time_ranges.iter().flatten().copied());
    let span = statistics.chain(seen).reduce(|(a, b), (c, d)| (a.min(c), b.max(d)));
    let span = match span {
        Some((a, b)) => format!("the data spans {} .. {}", format_timestamp(a), format_timestamp(b)),
        None => "the data has no rows".to_string(),
    };
    Error::invalid(
        Problem::new("traffic.start/traffic.end", format!("the window {window} selects no requests; {span}"))
            .fix("move the window onto the data, or remove traffic.start and traffic.end"),
    )
}

fn unsorted(file: &TrafficFile, column: &str, row: i64, t: Micros, previous: Micros) -> Error {
    Error::invalid(
        Problem::new(
            format!("{}: column \"{column}\"", file.path.display()),
            format!("is not sorted: row {row} ({}) is earlier than row {} ({})", format_timestamp(t), row - 1, format_timestamp(previous)),
        )
        .fix(format!(
            "sort the log by time, e.g. polars: pl.read_parquet(p).sort(\"{column}\").write_parquet(p), or set \
             traffic.sort = true to have canary-replay sort it (files that overlap in time are merged, but each file must be sorted by itself)"
        )),
    )
}
