//! One ONNX model: its signature checked against the scenario and the data, and batch inference
//! of its score.
//!
//! Inputs are either one `[N, F]` tensor whose columns are the features in order, or one `[N, 1]`
//! (or `[N]`) tensor per feature. The feature list comes from the scenario, else the model's
//! `feature_names` metadata, else (for one input per feature) the input names. The score is one
//! named output: a class column of `[N, classes]`, an `[N]`/`[N, 1]` value, or a ZipMap entry.
//! Shapes declared in the model can be wrong (`[1]` for `[N]`), so outputs are read by their
//! run-time shape.

use std::sync::Arc;

use ort::session::{Session, SessionInputValue};
use ort::value::{DynMapValueType, TensorRef};

pub use super::signature::parse_feature_names;
use super::signature::{inputs, output};
use crate::error::{Error, Problem, Result};
use crate::runtime::Runtime;
use crate::scenario::{ModelSpec, Role, Transform};

/// Element type of a model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    F32,
    F64,
}

/// How features reach the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputLayout {
    /// One `[N, F]` tensor.
    Matrix { name: String, elem: Elem },
    /// One `[N, 1]` or `[N]` tensor per feature, in feature order.
    PerFeature { inputs: Vec<(String, Elem, usize)> },
}

/// Which output holds the score, and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputKind {
    /// A float tensor: `[N]`, `[N, 1]`, or `[N, C]` with a class column, and what turns it into
    /// the score; `columns` is C where the model declares it.
    Tensor { class: Option<usize>, transform: Transform, columns: Option<usize> },
    /// A ZipMap: a sequence of one map per row, keyed by class (`None`: string keys and no
    /// `class` given, so which one is the score cannot be guessed).
    ZipMap { key: Option<ZipKey> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZipKey {
    Int(i64),
    Text(String),
}

/// Where the feature list came from, for messages and summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureSource {
    Scenario,
    Metadata,
    InputNames,
}

/// A model whose signature has been checked, ready to make per-worker sessions.
#[derive(Debug)]
pub struct Model {
    pub spec: ModelSpec,
    /// The model file's bytes, shared by every worker's session.
    pub bytes: Arc<Vec<u8>>,
    /// blake3 of the file, hex.
    pub hash: String,
    pub input: InputLayout,
    pub output: String,
    pub output_kind: OutputKind,
    pub features: Vec<String>,
    pub feature_source: FeatureSource,
}

impl Model {
    /// Loads the model once and checks its signature; every problem found is returned.
    pub fn open(runtime: &Runtime, spec: &ModelSpec) -> Result<Model> {
        let location = spec.path.display().to_string();
        let bytes = std::fs::read(&spec.path).map_err(|e| {
            Error::invalid(Problem::new(format!("models.{}.path", spec.role.name()), format!("cannot read {location}: {e}")))
        })?;
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let session = session(runtime, &bytes, 1).map_err(|e| {
            let message = e.to_string();
            let problem = match unregistered_operator(&message) {
                Some((domain, op)) => Problem::new(&location, format!("uses the operator {op} of the domain \"{domain}\", which ONNX Runtime {} does not have", runtime.version))
                    .fix("export the model with standard ONNX operators only, or without the custom-operator library's ops (ONNX Runtime can only load such a model with that library registered)"),
                None => Problem::new(&location, format!("is not a model ONNX Runtime {} can load: {}", runtime.version, first_line(&message)))
                    .fix("export the model to ONNX (skl2onnx, onnxmltools, torch.onnx.export) and check the file is complete"),
            };
            Error::invalid(problem)
        })?;
        let mut problems = Vec::new();
        let metadata_features = session.metadata().ok().and_then(|m| m.custom("feature_names")).map(|s| parse_feature_names(&s));
        let (input, features, feature_source) = match inputs(&location, spec, session.inputs(), metadata_features, &mut problems) {
            Some(found) => found,
            None => return Err(Error::Invalid(problems)),
        };
        let output = output(&location, spec, session.outputs(), &mut problems);
        match output {
            Some((output, output_kind)) if problems.is_empty() => {
                Ok(Model { spec: spec.clone(), bytes: Arc::new(bytes), hash, input, output, output_kind, features, feature_source })
            }
            _ => Err(Error::Invalid(problems)),
        }
    }

    pub fn role(&self) -> Role {
        self.spec.role
    }

    /// The name of the single `[N, F]` input, when the model has one.
    pub fn input_name(&self) -> Option<&str> {
        match &self.input {
            InputLayout::Matrix { name, .. } => Some(name),
            InputLayout::PerFeature { .. } => None,
        }
    }

    /// A fresh session for one worker.
    pub fn session(&self, runtime: &Runtime, intra_threads: usize) -> Result<Session> {
        session(runtime, &self.bytes, intra_threads)
            .map_err(|e| Error::Internal(format!("{}: cannot create a session: {e}", self.spec.path.display())))
    }

    /// Whether `other` takes exactly the same input (so one input can feed both).
    pub fn same_input(&self, other: &Model) -> bool {
        self.input == other.input && self.features == other.features
    }

    /// Builds this model's input for `rows` from its feature columns (in its feature order).
    pub fn input(&self, columns: &[&[f64]], rows: std::ops::Range<usize>) -> Input {
        let mut input = Input::default();
        match &self.input {
            InputLayout::Matrix { elem, .. } => match elem {
                Elem::F32 => {
                    let mut buf = Vec::with_capacity(rows.len() * columns.len());
                    for r in rows {
                        buf.extend(columns.iter().map(|c| c[r] as f32));
                    }
                    input.f32s.push(buf);
                }
                Elem::F64 => {
                    let mut buf = Vec::with_capacity(rows.len() * columns.len());
                    for r in rows {
                        buf.extend(columns.iter().map(|c| c[r]));
                    }
                    input.f64s.push(buf);
                }
            },
            InputLayout::PerFeature { inputs } => {
                for ((_, elem, _), column) in inputs.iter().zip(columns) {
                    match elem {
                        Elem::F32 => input.f32s.push(column[rows.clone()].iter().map(|v| *v as f32).collect()),
                        Elem::F64 => input.f64s.push(column[rows.clone()].to_vec()),
                    }
                }
            }
        }
        input
    }

    /// Scores `rows` rows whose feature columns (in this model's feature order) are `columns`.
    pub fn predict(
        &self,
        session: &mut Session,
        columns: &[&[f64]],
        rows: std::ops::Range<usize>,
    ) -> std::result::Result<Vec<f64>, String> {
        let n = rows.len();
        let input = self.input(columns, rows);
        self.run(session, &input, n)
    }

    /// Runs the model on an input of `n` rows and reads the score of each row. Non-finite scores
    /// are returned as they are; the caller records them as row errors.
    pub fn run(&self, session: &mut Session, input: &Input, n: usize) -> std::result::Result<Vec<f64>, String> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut values: Vec<(String, SessionInputValue<'_>)> = Vec::new();
        let (mut next32, mut next64) = (input.f32s.iter(), input.f64s.iter());
        let err = |e: ort::Error| e.to_string();
        match &self.input {
            InputLayout::Matrix { name, elem } => {
                let shape = [n, self.features.len()];
                let value = match elem {
                    Elem::F32 => TensorRef::from_array_view((shape, next32.next().expect("buffer").as_slice())).map_err(err)?.into(),
                    Elem::F64 => TensorRef::from_array_view((shape, next64.next().expect("buffer").as_slice())).map_err(err)?.into(),
                };
                values.push((name.clone(), value));
            }
            InputLayout::PerFeature { inputs } => {
                for (name, elem, rank) in inputs {
                    let shape: Vec<usize> = if *rank == 1 { vec![n] } else { vec![n, 1] };
                    let value = match elem {
                        Elem::F32 => TensorRef::from_array_view((shape, next32.next().expect("buffer").as_slice())).map_err(err)?.into(),
                        Elem::F64 => TensorRef::from_array_view((shape, next64.next().expect("buffer").as_slice())).map_err(err)?.into(),
                    };
                    values.push((name.clone(), value));
                }
            }
        }
        let outputs = session.run(values).map_err(err)?;
        let value = outputs.get(&self.output).ok_or_else(|| format!("the run returned no output \"{}\"", self.output))?;
        let scores = match &self.output_kind {
            OutputKind::Tensor { class, transform, .. } => {
                if let Ok((shape, data)) = value.try_extract_tensor::<f32>() {
                    pick(shape, data, *class, *transform, n, |v| v as f64)?
                } else {
                    let (shape, data) = value.try_extract_tensor::<f64>().map_err(err)?;
                    pick(shape, data, *class, *transform, n, |v| v)?
                }
            }
            OutputKind::ZipMap { key } => {
                let maps = value.try_extract_sequence::<DynMapValueType>().map_err(err)?;
                if maps.len() != n {
                    return Err(format!("output \"{}\" has {} maps for {n} rows", self.output, maps.len()));
                }
                let mut out = Vec::with_capacity(n);
                for map in &maps {
                    let entries: Vec<(String, f32)> = match key {
                        Some(ZipKey::Int(_)) => {
                            map.try_extract_key_values::<i64, f32>().map_err(err)?.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                        }
                        Some(ZipKey::Text(_)) | None => map.try_extract_key_values::<String, f32>().map_err(err)?,
                    };
                    let wanted = key.as_ref().map(ZipKey::text);
                    match entries.iter().find(|(k, _)| Some(k) == wanted.as_ref()) {
                        Some((_, v)) => out.push(*v as f64),
                        None => return Err(missing_key(&self.output, wanted.as_deref(), &entries)),
                    }
                }
                out
            }
        };
        Ok(scores)
    }
}

/// Why a ZipMap row has no score: the key is not among its keys, or none was given.
fn missing_key(output: &str, wanted: Option<&str>, entries: &[(String, f32)]) -> String {
    let keys: Vec<String> = entries.iter().map(|(k, _)| format!("\"{k}\"")).collect();
    match wanted {
        Some(k) => format!("ZipMap output \"{output}\" has no class \"{k}\"; its keys are {}", keys.join(", ")),
        None => {
            format!("ZipMap output \"{output}\" is keyed by class names ({}): which one is the score cannot be guessed", keys.join(", "))
        }
    }
}

impl ZipKey {
    fn text(&self) -> String {
        match self {
            ZipKey::Int(k) => k.to_string(),
            ZipKey::Text(k) => k.clone(),
        }
    }
}

/// A model input built from feature columns: the buffers in input order, by element type.
#[derive(Debug, Default)]
pub struct Input {
    f32s: Vec<Vec<f32>>,
    f64s: Vec<Vec<f64>>,
}

/// Reads the score column out of a run-time output tensor, transformed into the score.
fn pick<T: Copy>(
    shape: &[i64],
    data: &[T],
    class: Option<usize>,
    transform: Transform,
    n: usize,
    to_f64: impl Fn(T) -> f64,
) -> std::result::Result<Vec<f64>, String> {
    let width = data.len().checked_div(n).unwrap_or(0);
    if data.len() != n * width || width == 0 {
        return Err(format!("output of shape {shape:?} does not hold one score per row for {n} rows"));
    }
    let column = match (class, width) {
        (None, 1) | (Some(0), 1) => 0,
        (None, 2) => 1,
        (Some(c), w) if c < w => c,
        (Some(c), w) => return Err(format!("class {c} is out of range: the output has {w} columns")),
        (None, w) => return Err(format!("the output has {w} columns: set `class`")),
    };
    Ok(data
        .chunks_exact(width)
        .map(|row| match transform {
            Transform::None => to_f64(row[column]),
            Transform::Sigmoid => 1.0 / (1.0 + (-to_f64(row[column])).exp()),
            Transform::Softmax => {
                let max = row.iter().map(|v| to_f64(*v)).fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = row.iter().map(|v| (to_f64(*v) - max).exp()).sum();
                (to_f64(row[column]) - max).exp() / sum
            }
        })
        .collect())
}

fn session(runtime: &Runtime, bytes: &[u8], intra_threads: usize) -> ort::Result<Session> {
    Session::builder(runtime.environment())?.with_intra_threads(intra_threads)?.with_inter_threads(1)?.commit_from_memory(bytes)
}

/// The (domain, operator) of ONNX Runtime's "`domain:Op(-1) is not a registered function/op`".
fn unregistered_operator(message: &str) -> Option<(String, String)> {
    let head = &message[..message.find(" is not a registered function/op")?];
    let (before, op) = head.rsplit_once(':')?;
    let domain = before.rsplit([' ', ':']).next()?;
    let op = op.split('(').next()?;
    (!domain.is_empty() && !op.is_empty()).then(|| (domain.to_string(), op.to_string()))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// The features both models read, in first-seen order.
pub fn feature_union(models: &[&Model]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in models {
        for f in &m.features {
            if !out.contains(f) {
                out.push(f.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unregistered_operator_names_its_domain() {
        let message = "[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:Fatal error: com.example.custom:Score(-1) is not a registered function/op";
        assert_eq!(unregistered_operator(message), Some(("com.example.custom".to_string(), "Score".to_string())));
        assert_eq!(unregistered_operator("Load model failed: protobuf parsing failed"), None);
    }

    #[test]
    fn feature_names_metadata_is_comma_separated_or_json() {
        assert_eq!(parse_feature_names("a, b,c"), ["a", "b", "c"]);
        assert_eq!(parse_feature_names("[\"a\", \"b,c\"]"), ["a", "b,c"]);
    }

    #[test]
    fn scores_are_picked_by_runtime_shape() {
        let two = [0.2f32, 0.8, 0.6, 0.4];
        assert_eq!(pick(&[-1, 2], &two, None, Transform::None, 2, |v| v as f64).unwrap(), [0.800000011920929, 0.4000000059604645]);
        assert_eq!(pick(&[1], &[0.5f32, 0.25], None, Transform::None, 2, |v| v as f64).unwrap(), [0.5, 0.25]);
        assert!(pick(&[2, 3], &[0f32; 6], None, Transform::None, 2, |v| v as f64).unwrap_err().contains("set `class`"));
        assert!(pick(&[2, 2], &two, Some(2), Transform::None, 2, |v| v as f64).unwrap_err().contains("out of range"));
        assert!(pick(&[3], &[0f32; 3], None, Transform::None, 2, |v| v as f64).is_err());
        // Logits: a sigmoid of one column; a softmax over a row's columns.
        let logits = [0.0f32, 2.0];
        assert_eq!(pick(&[2], &logits, None, Transform::Sigmoid, 2, |v| v as f64).unwrap(), [0.5, 1.0 / (1.0 + (-2.0f64).exp())]);
        let softmax = pick(&[1, 2], &logits, None, Transform::Softmax, 1, |v| v as f64).unwrap();
        assert!((softmax[0] - 2f64.exp() / (1.0 + 2f64.exp())).abs() < 1e-15);
    }
}
