//! Where traffic lives: this machine's file system, or object storage — `s3://`, `gs://` and
//! `az://` URLs (also `s3a://`, `abfs://`, `abfss://`, `azure://`) through the object_store
//! crate, with each cloud's standard credential environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`;
//! `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP=true` for an S3-protocol server of your own).
//!
//! An object is never downloaded whole: a Parquet reader asks for its footer and then the column
//! chunks it decodes, and [`Blob`] turns those asks into range requests through a small cache of
//! aligned blocks (a reader's many small asks for page headers cost one request per block).
//! Requests have bounded timeouts and retries, so an unreachable endpoint is an error naming the
//! URL within about half a minute, not a hang.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as Key;
use object_store::{ClientConfigKey, ObjectMeta, ObjectStore, ObjectStoreExt, RetryConfig};
use parquet::file::reader::{ChunkReader, Length};

use crate::error::{Error, Problem, Result};

/// URL schemes read through object storage.
const SCHEMES: [&str; 7] = ["s3", "s3a", "gs", "az", "azure", "abfs", "abfss"];

/// Whether `text` is an object-storage URL (`s3://bucket/key` and the like).
pub fn is_url(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

/// A path as a scenario or the command line gives it: on this machine, or a URL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Location {
    Local(PathBuf),
    Url(String),
}

impl Location {
    /// `text` as written: a URL stays as it is, a path is resolved against `dir`.
    pub fn parse(text: &str, dir: &Path) -> Self {
        if is_url(text) {
            Location::Url(text.to_string())
        } else {
            Location::Local(dir.join(text))
        }
    }

    /// Itself, shown as a path or URL (as `Path::display`, so messages read alike).
    pub fn display(&self) -> &Self {
        self
    }

    pub fn local(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            Location::Url(_) => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Url(u) => f.write_str(u),
        }
    }
}

/// One file found: a local file, or an object with what its listing said of it.
#[derive(Debug, Clone)]
pub enum Place {
    Local(PathBuf),
    Object(Object),
}

/// An object in a store.
#[derive(Clone)]
pub struct Object {
    store: Arc<dyn ObjectStore>,
    /// `scheme://bucket/key`, for messages and ordering.
    pub url: String,
    key: Key,
    size: u64,
    e_tag: Option<String>,
    last_modified: i64,
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Object").field("url", &self.url).field("size", &self.size).field("e_tag", &self.e_tag).finish()
    }
}

impl Place {
    /// The path or URL, for messages and ordering.
    pub fn text(&self) -> String {
        match self {
            Place::Local(p) => p.display().to_string(),
            Place::Object(o) => o.url.clone(),
        }
    }

    /// Itself, shown as a path or URL (as `Path::display`, so messages read alike).
    pub fn display(&self) -> &Self {
        self
    }

    pub fn name(&self) -> String {
        match self {
            Place::Local(p) => display_name(p),
            Place::Object(o) => o.url.rsplit('/').next().unwrap_or(&o.url).to_string(),
        }
    }

    /// Opens it for reading by range.
    pub fn open(&self) -> Result<Blob> {
        match self {
            Place::Local(p) => Ok(Blob::File(Arc::new(File::open(p).map_err(|e| Error::io(p, e))?))),
            Place::Object(o) => Ok(Blob::Object(Arc::new(Ranged { object: o.clone(), blocks: Mutex::new(VecDeque::new()) }))),
        }
    }

    /// What identifies the content: a local file's BLAKE3 hash; an object's size and entity tag
    /// (the store changes the tag whenever the object is written), or its time of writing where
    /// the store gives no tag — the same on every machine that reads it, and without reading it.
    pub fn content_hash(&self) -> Result<String> {
        match self {
            Place::Local(p) => crate::hash::hash_file(p),
            Place::Object(o) => {
                let id = match &o.e_tag {
                    Some(tag) => format!("object|{}|etag {tag}", o.size),
                    // Whole seconds: an HTTP date (a HEAD's answer) has no more.
                    None => format!("object|{}|modified {}", o.size, o.last_modified.div_euclid(crate::time::MICROS_PER_SECOND)),
                };
                Ok(blake3::hash(id.as_bytes()).to_hex().to_string())
            }
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl PartialEq for Place {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl Eq for Place {}

impl PartialOrd for Place {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Place {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text().cmp(&other.text())
    }
}

/// The runtime object_store's clients run on (this crate is otherwise synchronous).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("object-store")
            .enable_all()
            .build()
            .expect("a tokio runtime for object storage")
    })
}

/// Seconds a request may take before it is retried, and the retries' total budget.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_BUDGET: Duration = Duration::from_secs(20);

/// The store holding `url` (`scheme://bucket/…`), configured from the environment, and the key.
fn store_of(url: &str) -> Result<(Arc<dyn ObjectStore>, Key)> {
    let parsed = url::Url::parse(url).map_err(|e| bad_url(url, &e.to_string()))?;
    let key = Key::from_url_path(parsed.path()).map_err(|e| bad_url(url, &e.to_string()))?;
    // Timeouts set key by key: `with_client_options` would drop what the environment set
    // (AWS_ALLOW_HTTP, proxies).
    let (timeout, connect) = (format!("{}s", REQUEST_TIMEOUT.as_secs()), format!("{}s", CONNECT_TIMEOUT.as_secs()));
    let retry = RetryConfig { max_retries: 2, retry_timeout: RETRY_BUDGET, ..RetryConfig::default() };
    let scheme = parsed.scheme().to_ascii_lowercase();
    // Each cloud's builder from its environment, for `url`, with the bounds above.
    macro_rules! bounded {
        ($builder:ty, $key:path) => {
            <$builder>::from_env()
                .with_url(url)
                .with_config($key(ClientConfigKey::Timeout), &timeout)
                .with_config($key(ClientConfigKey::ConnectTimeout), &connect)
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        };
    }
    let built = match scheme.as_str() {
        "s3" | "s3a" => {
            check_credentials(url)?;
            bounded!(object_store::aws::AmazonS3Builder, object_store::aws::AmazonS3ConfigKey::Client)
        }
        "gs" => bounded!(object_store::gcp::GoogleCloudStorageBuilder, object_store::gcp::GoogleConfigKey::Client),
        _ => bounded!(object_store::azure::MicrosoftAzureBuilder, object_store::azure::AzureConfigKey::Client),
    };
    let store = built.map_err(|e| {
        Error::invalid(Problem::new(url, format!("cannot configure the object store: {}", chain(&e))).fix(credentials_fix(&scheme)))
    })?;
    Ok((store, key))
}

fn bad_url(url: &str, why: &str) -> Error {
    Error::invalid(
        Problem::new(url, format!("not a valid storage URL: {why}"))
            .fix("write it as s3://bucket/path, gs://bucket/path or az://container/path"),
    )
}

/// Where each cloud's client looks for credentials, and how to point it elsewhere.
fn credentials_fix(scheme: &str) -> &'static str {
    match scheme {
        "s3" | "s3a" => "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a role, AWS_PROFILE, AWS_WEB_IDENTITY_TOKEN_FILE) and AWS_REGION; for an S3-protocol server of your own also AWS_ENDPOINT_URL=http://host:port and AWS_ALLOW_HTTP=true",
        "gs" => "set GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT) to a service-account key file, or run on a machine with a service account",
        _ => "set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and AZURE_TENANT_ID)",
    }
}

/// An error and its sources, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// What went wrong with a request, as far as the user's fix goes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Failure {
    NoBucket,
    Refused,
    Unreachable,
    NoObject,
    Other,
}

fn failure(e: &object_store::Error) -> Failure {
    let detail = chain(e);
    if detail.contains("NoSuchBucket") {
        Failure::NoBucket
    } else if matches!(e, object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. })
        || detail.contains("403 Forbidden")
    {
        Failure::Refused
    } else if ["Connection refused", "tcp connect error", "dns error", "timed out"].iter().any(|s| detail.contains(s)) {
        Failure::Unreachable
    } else if matches!(e, object_store::Error::NotFound { .. }) {
        Failure::NoObject
    } else {
        Failure::Other
    }
}

/// A failed request as the user's error: what was asked, of which URL, what went wrong in words,
/// and what to check.
fn request_error(url: &str, what: &str, e: &object_store::Error) -> Error {
    let scheme = url.split_once("://").map_or("s3", |(s, _)| s);
    let endpoint = endpoint().filter(|_| scheme.starts_with("s3"));
    let (why, fix) = match failure(e) {
        Failure::NoBucket => (
            "the bucket does not exist".to_string(),
            "check the bucket's name in the URL (and the endpoint and region it lives in)".to_string(),
        ),
        Failure::Refused => {
            ("the store refused the credentials".to_string(), format!("check the credentials: {}", credentials_fix(scheme)))
        }
        Failure::Unreachable => {
            let at = endpoint.as_deref().map(|e| format!(" at {e}")).unwrap_or_default();
            (format!("the store{at} cannot be reached"), "check that the endpoint is reachable from this machine (AWS_ENDPOINT_URL for an S3-protocol server of your own, with AWS_ALLOW_HTTP=true for http://)".to_string())
        }
        Failure::NoObject => {
            ("there is no such object".to_string(), "check the path (a listing of the bucket shows what is there)".to_string())
        }
        Failure::Other => {
            ("the request failed".to_string(), format!("check the endpoint, the bucket and the credentials: {}", credentials_fix(scheme)))
        }
    };
    Error::invalid(Problem::new(url, format!("cannot {what}: {why} ({})", chain(e))).fix(fix))
}

/// The S3 endpoint the environment names, if any (else AWS's own).
pub fn endpoint() -> Option<String> {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"].iter().find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// Refuses, before any request, an S3 URL that no credential in the environment would sign for an
/// endpoint of the user's own (with no endpoint set, AWS's own credential chain — instance and
/// container roles — may still find some).
fn check_credentials(url: &str) -> Result<()> {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let endpoint = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT", "AWS_ENDPOINT_URL_S3"].iter().find(|k| set(k));
    let signed = [
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]
    .iter()
    .any(|k| set(k));
    let anonymous = std::env::var("AWS_SKIP_SIGNATURE").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    match endpoint {
        Some(endpoint) if !signed && !anonymous => Err(Error::invalid(
            Problem::new(url, format!("no credentials for the endpoint {endpoint} sets: AWS_ACCESS_KEY_ID is not set"))
                .fix("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_SKIP_SIGNATURE=true for a public bucket)"),
        )),
        _ => Ok(()),
    }
}

/// The objects a URL names: one object, every `.parquet` object below a prefix (Hive and Spark
/// layouts included; hidden and `_`-prefixed names skipped, as for folders), or a glob's matches
/// (the listing starts at the glob's fixed prefix). Each with its Hive partition keys.
pub fn list(url: &str) -> Result<Vec<(Place, Partitions)>> {
    let glob_at = url.find(['*', '?', '[']);
    let fixed = &url[..glob_at.unwrap_or(url.len())];
    let root = match glob_at {
        Some(_) => fixed.rsplit_once('/').map_or(fixed, |(a, _)| a),
        None => url,
    };
    let (store, root_key) = store_of(root)?;
    let pattern = match glob_at {
        Some(_) => Some(glob::Pattern::new(url).map_err(|e| Error::invalid(Problem::new(url, format!("not a valid glob: {e}"))))?),
        None => None,
    };
    let base = root.trim_end_matches('/');
    // A key below the root, relative to it ("" for the root itself).
    let relative =
        |key: &Key| -> String { key.as_ref().strip_prefix(root_key.as_ref()).unwrap_or(key.as_ref()).trim_start_matches('/').to_string() };
    let to_place = |meta: ObjectMeta| {
        let relative = relative(&meta.location);
        let url = if relative.is_empty() { base.to_string() } else { format!("{base}/{relative}") };
        // Stores quote entity tags in one answer and not in another (a listing, a HEAD).
        let e_tag = meta.e_tag.map(|t| t.trim_start_matches("W/").trim_matches('"').to_string());
        Object {
            store: store.clone(),
            url,
            key: meta.location,
            size: meta.size,
            e_tag,
            last_modified: meta.last_modified.timestamp_micros(),
        }
    };
    // A single object named outright (a URL ending in / is a prefix). A store that answers a
    // prefix's HEAD with an error of its own rather than "not found" is listed all the same.
    if pattern.is_none() && !root_key.as_ref().is_empty() && !url.ends_with('/') {
        match runtime().block_on(store.head(&root_key)) {
            Ok(meta) => return Ok(vec![(Place::Object(to_place(meta)), Vec::new())]),
            Err(e) if matches!(failure(&e), Failure::NoObject | Failure::Other) => {}
            Err(e) => return Err(request_error(url, "read the object", &e)),
        }
    }
    let prefix = (!root_key.as_ref().is_empty()).then_some(&root_key);
    let listed: Vec<ObjectMeta> =
        runtime().block_on(store.list(prefix).try_collect()).map_err(|e| request_error(base, "list the objects", &e))?;
    let mut found = Vec::new();
    for meta in listed {
        let relative = relative(&meta.location);
        let parts: Vec<&str> = relative.split('/').collect();
        let name = parts.last().copied().unwrap_or_default();
        if parts.iter().any(|p| p.starts_with(['.', '_'])) || !(name.ends_with(".parquet") || name.ends_with(".parq")) {
            continue;
        }
        // A listing without entity tags (some S3-protocol servers) is completed by a HEAD, so an
        // object has the same identity however it was found.
        let meta = match meta.e_tag {
            Some(_) => meta,
            None => runtime().block_on(store.head(&meta.location)).map_err(|e| request_error(url, "read the object", &e))?,
        };
        let object = to_place(meta);
        if pattern.as_ref().is_some_and(|p| !p.matches(&object.url)) {
            continue;
        }
        let partitions = match pattern {
            Some(_) => Vec::new(),
            None => hive_partitions_of(&parts[..parts.len() - 1]),
        };
        found.push((Place::Object(object), partitions));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// A file open for reading by range: a local file, or an object behind a block cache.
#[derive(Clone)]
pub enum Blob {
    File(Arc<File>),
    Object(Arc<Ranged>),
}

impl Length for Blob {
    fn len(&self) -> u64 {
        match self {
            Blob::File(f) => f.len(),
            Blob::Object(r) => r.object.size,
        }
    }
}

/// A reader of a [`Blob`] from an offset on.
pub enum BlobRead {
    File(<File as ChunkReader>::T),
    Object { ranged: Arc<Ranged>, at: u64 },
}

impl Read for BlobRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            BlobRead::File(r) => r.read(buf),
            BlobRead::Object { ranged, at } => {
                let available = ranged.object.size.saturating_sub(*at);
                let n = (buf.len() as u64).min(available).min(BLOCK - *at % BLOCK) as usize;
                if n == 0 {
                    return Ok(0);
                }
                let bytes = ranged.bytes(*at, n).map_err(std::io::Error::other)?;
                buf[..n].copy_from_slice(&bytes);
                *at += n as u64;
                Ok(n)
            }
        }
    }
}

impl ChunkReader for Blob {
    type T = BlobRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<BlobRead> {
        match self {
            Blob::File(f) => Ok(BlobRead::File(f.get_read(start)?)),
            Blob::Object(r) => Ok(BlobRead::Object { ranged: r.clone(), at: start }),
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        match self {
            Blob::File(f) => f.get_bytes(start, length),
            Blob::Object(r) => r.bytes(start, length).map_err(|e| parquet::errors::ParquetError::External(Box::new(e))),
        }
    }
}

/// Bytes per block of the cache, and blocks kept per open object (4 MiB).
const BLOCK: u64 = 1 << 18;
const BLOCKS_KEPT: usize = 16;

/// An object read by range through the last few blocks it fetched.
pub struct Ranged {
    object: Object,
    blocks: Mutex<VecDeque<(u64, Bytes)>>,
}

impl Ranged {
    /// `length` bytes from `start`: from cached blocks, fetching the missing ones in one request
    /// (a long read, such as a whole column chunk, is fetched as it is and not cached).
    fn bytes(&self, start: u64, length: usize) -> std::result::Result<Bytes, std::io::Error> {
        let end = start + length as u64;
        if end > self.object.size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{}: bytes {start}..{end} past its end ({})", self.object.url, self.object.size),
            ));
        }
        if length as u64 > BLOCK * BLOCKS_KEPT as u64 / 2 {
            return self.fetch(start, end);
        }
        let (first, last) = (start / BLOCK, (end.max(start + 1) - 1) / BLOCK);
        let mut pieces = Vec::with_capacity((last - first + 1) as usize);
        {
            let blocks = self.blocks.lock().expect("block cache");
            for b in first..=last {
                pieces.push(blocks.iter().find(|(k, _)| *k == b).map(|(_, bytes)| bytes.clone()));
            }
        }
        if let Some(missing) = pieces.iter().position(Option::is_none) {
            let from = first + missing as u64;
            let to = (last + 1) * BLOCK;
            let fetched = self.fetch(from * BLOCK, to.min(self.object.size))?;
            let mut blocks = self.blocks.lock().expect("block cache");
            for (i, b) in (from..=last).enumerate() {
                let lo = i as u64 * BLOCK;
                let piece = fetched.slice(lo as usize..((lo + BLOCK) as usize).min(fetched.len()));
                pieces[(b - first) as usize] = Some(piece.clone());
                blocks.retain(|(k, _)| *k != b);
                blocks.push_back((b, piece));
                if blocks.len() > BLOCKS_KEPT {
                    blocks.pop_front();
                }
            }
        }
        let offset = (start - first * BLOCK) as usize;
        if pieces.len() == 1 {
            let piece = pieces.pop().flatten().expect("fetched");
            return Ok(piece.slice(offset..offset + length));
        }
        let mut out = Vec::with_capacity(length);
        for piece in pieces.into_iter().flatten() {
            out.extend_from_slice(&piece);
        }
        Ok(Bytes::from(out).slice(offset..offset + length))
    }

    fn fetch(&self, start: u64, end: u64) -> std::result::Result<Bytes, std::io::Error> {
        runtime()
            .block_on(self.object.store.get_range(&self.object.key, start..end))
            .map_err(|e| std::io::Error::other(format!("{}: cannot read bytes {start}..{end}: {}", self.object.url, chain(&e))))
    }
}

/// Whether the object at `url` exists.
pub fn exists(url: &str) -> Result<bool> {
    let (store, key) = store_of(url)?;
    match runtime().block_on(store.head(&key)) {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(request_error(url, "look for the object", &e)),
    }
}

/// Downloads the object at `url` to `to`, streamed to a temporary name and renamed when whole.
pub fn download(url: &str, to: &Path) -> Result<()> {
    use std::io::Write;
    let (store, key) = store_of(url)?;
    let pending = crate::atomic::Pending::new(to);
    let mut file = std::io::BufWriter::new(File::create(pending.path()).map_err(|e| Error::io(to, e))?);
    runtime().block_on(async {
        let mut stream = store.get(&key).await.map_err(|e| request_error(url, "download the object", &e))?.into_stream();
        while let Some(chunk) = stream.try_next().await.map_err(|e| request_error(url, "download the object", &e))? {
            file.write_all(&chunk).map_err(|e| Error::io(to, e))?;
        }
        Ok::<(), Error>(())
    })?;
    file.flush().map_err(|e| Error::io(to, e))?;
    drop(file);
    pending.commit().map(|_| ())
}

/// Uploads the file `from` to `url`, in parts when it is large. The object appears whole when the
/// upload completes (a PUT, or the completion of a multipart upload, is atomic) or not at all.
pub fn upload(from: &Path, url: &str) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let (store, key) = store_of(url)?;
    let mut file = File::open(from).map_err(|e| Error::io(from, e))?;
    runtime().block_on(async {
        let mut writer = object_store::buffered::BufWriter::new(store, key);
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buffer).map_err(|e| Error::io(from, e))?;
            if n == 0 {
                break;
            }
            if let Err(e) = writer.write_all(&buffer[..n]).await {
                let _ = writer.abort().await;
                return Err(Error::invalid(
                    Problem::new(url, format!("cannot upload {}: {e}", from.display()))
                        .fix(credentials_fix(url.split("://").next().unwrap_or("s3"))),
                ));
            }
        }
        writer.shutdown().await.map_err(|e| {
            Error::invalid(
                Problem::new(url, format!("cannot upload {}: {e}", from.display()))
                    .fix(credentials_fix(url.split("://").next().unwrap_or("s3"))),
            )
        })
    })
}
/// Hive partition keys of a file (`date=2013-09-01/` → (`date`, `2013-09-01`); `None`: Hive's null).
pub type Partitions = Vec<(String, Option<String>)>;

/// The Hive partition keys of a file's folders below the root, outermost first.
pub(crate) fn hive_partitions_of(folders: &[impl AsRef<str>]) -> Partitions {
    folders
        .iter()
        .filter_map(|folder| {
            let (key, value) = folder.as_ref().split_once('=')?;
            let value = (value != "__HIVE_DEFAULT_PARTITION__").then(|| percent_decode(value));
            Some((percent_decode(key), value))
        })
        .collect()
}

/// Decodes `%XX` escapes (Spark and Hive escape `/`, `=`, `%`, `:` and others in partition folders).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%').then(|| text.get(i + 1..i + 3)).flatten().and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last component of a path, for short messages; the whole path when it has none.
pub fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}
