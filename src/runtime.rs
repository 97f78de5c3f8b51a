//! Finding and loading ONNX Runtime at run time.
//!
//! The shared library is looked for, in order: an explicit path (`--ort-lib`), `ORT_DYLIB_PATH`,
//! the Python `onnxruntime` package, system library folders, and this tool's cache. When none is
//! found, the pinned `onnxruntime` wheel is fetched from the Python package index with pip into the
//! cache (saying so); `CANARY_REPLAY_NO_FETCH=1` or `--no-fetch` forbids that. Each candidate is
//! probed (its version read) before ONNX Runtime is initialised, because a process can load only
//! one ONNX Runtime library and must not commit to one that is too old.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Serialize;

use crate::error::{Error, Result};

/// The `onnxruntime` wheel fetched when no runtime is found.
pub const PINNED_VERSION: &str = "1.23.2";
/// The oldest ONNX Runtime this build can drive (the `api-22` feature of `ort`).
pub const MIN_MINOR: u32 = 22;

/// How to find ONNX Runtime.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// `--ort-lib`: a library file, or a folder holding one.
    pub explicit: Option<PathBuf>,
    /// Whether the pinned wheel may be fetched with pip when nothing is found.
    pub allow_fetch: bool,
    /// Overrides the tool's cache folder.
    pub cache_dir: Option<PathBuf>,
}

impl RuntimeOptions {
    /// Options from the environment: fetching allowed unless `CANARY_REPLAY_NO_FETCH` is set.
    pub fn from_env() -> Self {
        Self { explicit: None, allow_fetch: !env_flag("CANARY_REPLAY_NO_FETCH"), cache_dir: None }
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v.to_lowercase() != "false")
}

/// Where a runtime came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Flag,
    Env,
    PythonPackage,
    System,
    Cache,
    Fetched,
}

impl Source {
    /// As `summary.json` writes it: `python_package`.
    pub fn name(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::PythonPackage => "python_package",
            Source::System => "system",
            Source::Cache => "cache",
            Source::Fetched => "fetched",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Flag => "--ort-lib",
            Source::Env => "ORT_DYLIB_PATH",
            Source::PythonPackage => "the Python onnxruntime package",
            Source::System => "a system library folder",
            Source::Cache => "canary-replay's cache",
            Source::Fetched => "the Python package index, fetched just now into canary-replay's cache",
        })
    }
}

/// A loaded ONNX Runtime.
#[derive(Debug)]
pub struct Runtime {
    pub version: String,
    pub path: PathBuf,
    pub source: Source,
    env: ort::environment::Environment,
}

/// What is written into summaries about the runtime.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct RuntimeInfo {
    pub version: String,
    pub path: String,
    pub source: Source,
}

impl Runtime {
    pub fn environment(&self) -> &ort::environment::Environment {
        &self.env
    }

    pub fn info(&self) -> RuntimeInfo {
        RuntimeInfo { version: self.version.clone(), path: self.path.display().to_string(), source: self.source }
    }
}

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

/// Finds and loads ONNX Runtime once per process; later calls return the same runtime.
pub fn load(options: &RuntimeOptions) -> Result<&'static Runtime> {
    RUNTIME.get_or_init(|| load_uncached(options)).as_ref().map_err(|e| Error::Runtime(e.clone()))
}

fn load_uncached(options: &RuntimeOptions) -> std::result::Result<Runtime, String> {
    let (path, version, source) = locate(options)?;
    let builder = ort::init_from(&path).map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?;
    let env = builder
        .with_name("canary-replay")
        .with_telemetry(false)
        .build()
        .map_err(|e| format!("cannot start ONNX Runtime {version} from {}: {e}", path.display()))?;
    // Failures of single batches are expected (they are isolated down to rows and recorded), so
    // ONNX Runtime's own per-failure log lines would only flood the terminal.
    env.set_log_level(ort::logging::LogLevel::Fatal);
    Ok(Runtime { version, path, source, env })
}

/// The tool's cache folder: `CANARY_REPLAY_CACHE`, else `$XDG_CACHE_HOME/canary-replay`, else
/// `~/.cache/canary-replay`.
pub fn cache_root(explicit: Option<&Path>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    if let Some(dir) = std::env::var_os("CANARY_REPLAY_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("canary-replay");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("canary-replay"),
        None => std::env::temp_dir().join("canary-replay-cache"),
    }
}

#[cfg(target_os = "windows")]
const LIB_NAMES: &[&str] = &["onnxruntime.dll"];
#[cfg(target_os = "macos")]
const LIB_NAMES: &[&str] = &["libonnxruntime.dylib"];
#[cfg(not(any(target_os = "windows", target_os = "macos")))]
const LIB_NAMES: &[&str] = &["libonnxruntime.so"];

/// Finds a usable library: (path, version, source). Candidates that are too old are skipped,
/// except an explicit one, which is an error.
pub fn locate(options: &RuntimeOptions) -> std::result::Result<(PathBuf, String, Source), String> {
    let mut looked = Vec::new();
    let mut rejected = Vec::new();
    let mut explicit: Vec<(PathBuf, Source)> = Vec::new();
    if let Some(p) = &options.explicit {
        explicit.push((p.clone(), Source::Flag));
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        explicit.push((PathBuf::from(p), Source::Env));
    }
    // The flag wins over the environment variable.
    if let Some((given, source)) = explicit.into_iter().next() {
        let what = if source == Source::Flag { "--ort-lib" } else { "ORT_DYLIB_PATH" };
        let files = libraries_in(&given);
        let Some(file) = files.first() else {
            return Err(format!("{what} {}: no ONNX Runtime library there (expected {})", given.display(), LIB_NAMES[0]));
        };
        return probe(file).map(|v| (file.clone(), v, source)).map_err(|e| format!("{what} {}: {e}", file.display()));
    }

    let cache = cache_root(options.cache_dir.as_deref()).join("onnxruntime");
    let mut candidates: Vec<(PathBuf, Source)> = Vec::new();
    match python_package_dir() {
        Some(dir) => candidates.extend(libraries_in(&dir.join("capi")).into_iter().map(|p| (p, Source::PythonPackage))),
        None => looked.push("the Python onnxruntime package (not installed)".to_string()),
    }
    for dir in system_dirs() {
        candidates.extend(libraries_in(&dir).into_iter().map(|p| (p, Source::System)));
        looked.push(dir.display().to_string());
    }
    candidates.extend(cached_libraries(&cache).into_iter().map(|p| (p, Source::Cache)));
    looked.push(cache.display().to_string());

    for (path, source) in candidates {
        match probe(&path) {
            Ok(version) => return Ok((path, version, source)),
            Err(e) => rejected.push(format!("{}: {e}", path.display())),
        }
    }

    let mut message = format!("ONNX Runtime (1.{MIN_MINOR} or newer) was not found. Looked in: {}.", looked.join(", "));
    for r in &rejected {
        message.push_str(&format!("\n  skipped {r}"));
    }
    if !options.allow_fetch {
        message.push_str(&format!(
            "\n  fix: install it (`python3 -m pip install onnxruntime=={PINNED_VERSION}`), pass --ort-lib PATH or set ORT_DYLIB_PATH; \
             or allow canary-replay to fetch it by unsetting CANARY_REPLAY_NO_FETCH / dropping --no-fetch"
        ));
        return Err(message);
    }
    // On a first run the fetch is the expected path: one line says why, the full search list is
    // kept for when the fetch fails.
    eprintln!(
        "ONNX Runtime (1.{MIN_MINOR} or newer) is not installed in the {} places canary-replay looks (`--ort-lib` overrides).",
        looked.len()
    );
    for r in &rejected {
        eprintln!("  skipped {r}");
    }
    let path = fetch(&cache).map_err(|e| {
        format!(
            "{message}\nFetching onnxruntime=={PINNED_VERSION} with pip failed: {e}\n  fix: install it (`python3 -m pip install onnxruntime=={PINNED_VERSION}`), or pass --ort-lib PATH or set ORT_DYLIB_PATH"
        )
    })?;
    let version = probe(&path).map_err(|e| format!("the fetched library {} is unusable: {e}", path.display()))?;
    Ok((path, version, Source::Fetched))
}

/// Reads the library's version without initialising ONNX Runtime, and checks it is new enough.
pub fn probe(path: &Path) -> std::result::Result<String, String> {
    // SAFETY: loading ONNX Runtime runs its (side-effect free) static initialisers; it is unloaded
    // again when `lib` drops unless ort loads the same file later.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| format!("cannot load: {e}"))?;
    let version = unsafe {
        let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
            lib.get(b"OrtGetApiBase").map_err(|_| "not an ONNX Runtime library (no OrtGetApiBase)".to_string())?;
        let base = get_base();
        if base.is_null() {
            return Err("OrtGetApiBase returned nothing".into());
        }
        let text = ((*base).GetVersionString)();
        std::ffi::CStr::from_ptr(text).to_string_lossy().into_owned()
    };
    let minor: Option<u32> = version.split('.').nth(1).and_then(|m| m.parse().ok());
    match minor {
        Some(m) if version.starts_with("1.") && m >= MIN_MINOR => Ok(version),
        _ => Err(format!("version {version} is too old: canary-replay needs ONNX Runtime 1.{MIN_MINOR} or newer")),
    }
}

/// Library files at `path`: the file itself, or the matching files in a folder (newest name first).
fn libraries_in(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let Ok(entries) = std::fs::read_dir(path) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            p.is_file() && LIB_NAMES.iter().any(|lib| name == *lib || name.starts_with(&format!("{lib}.")))
        })
        .collect();
    // Prefer the most specific (versioned) names, newest version first.
    found.sort_by(|a, b| b.as_os_str().len().cmp(&a.as_os_str().len()).then(b.cmp(a)));
    found
}

fn cached_libraries(cache: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(cache) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    dirs.sort_by(|a, b| b.cmp(a));
    dirs.iter().flat_map(|d| libraries_in(d)).collect()
}

fn python() -> Option<&'static str> {
    ["python3", "python"].into_iter().find(|p| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// The installed `onnxruntime` Python package's folder, found without importing it.
fn python_package_dir() -> Option<PathBuf> {
    let python = python()?;
    let script = "import importlib.util as u; s = u.find_spec('onnxruntime'); print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')";
    let out = Command::new(python).args(["-c", script]).output().ok()?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
}

fn system_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect())
        .unwrap_or_default();
    for d in ["/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/opt/onnxruntime/lib"] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// Downloads the pinned wheel with pip and copies its shared library into `cache/<version>/`.
fn fetch(cache: &Path) -> std::result::Result<PathBuf, String> {
    let python = python().ok_or("neither python3 nor python is on PATH")?;
    let target = cache.join(PINNED_VERSION);
    eprintln!(
        "Fetching onnxruntime=={PINNED_VERSION} from the Python package index into {} (once; set CANARY_REPLAY_NO_FETCH=1 to forbid)",
        target.display()
    );
    std::fs::create_dir_all(cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    let work = cache.join(format!(".fetch-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(work.clone());
    let status = Command::new(python)
        .args(["-m", "pip", "download", &format!("onnxruntime=={PINNED_VERSION}"), "--no-deps", "--only-binary=:all:", "--quiet", "--dest"])
        .arg(&work)
        .status()
        .map_err(|e| format!("cannot run pip: {e}"))?;
    if !status.success() {
        return Err(format!("`{python} -m pip download onnxruntime=={PINNED_VERSION}` exited with {status}"));
    }
    let wheel = std::fs::read_dir(&work)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or("pip downloaded no wheel")?;
    let unpacked = work.join("unpacked");
    let status = Command::new(python)
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpacked)
        .status()
        .map_err(|e| format!("cannot unpack the wheel: {e}"))?;
    if !status.success() {
        return Err(format!("unpacking {} failed", wheel.display()));
    }
    let lib = libraries_in(&unpacked.join("onnxruntime").join("capi"))
        .into_iter()
        .next()
        .ok_or("the wheel holds no onnxruntime/capi shared library")?;
    let staged = work.join("lib");
    std::fs::create_dir_all(&staged).map_err(|e| e.to_string())?;
    let name = lib.file_name().expect("a library file has a name");
    std::fs::copy(&lib, staged.join(name)).map_err(|e| format!("cannot copy the library: {e}"))?;
    if let Err(e) = std::fs::rename(&staged, &target) {
        // Another process may have fetched the same version meanwhile: use its copy.
        return match libraries_in(&target).into_iter().next() {
            Some(existing) => Ok(existing),
            None => Err(format!("cannot move the library into {}: {e}", target.display())),
        };
    }
    Ok(target.join(name))
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
