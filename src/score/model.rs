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
use ort::value::{DynMapValueType, Outlet, TensorElementType, TensorRef, ValueType};

use crate::error::{Error, Problem, Result};
use crate::runtime::Runtime;
use crate::scenario::{Class, ModelSpec, Role, Transform};

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

/// `a,b,c` or `["a", "b", "c"]`.
pub fn parse_feature_names(text: &str) -> Vec<String> {
    if let Ok(list) = serde_json::from_str::<Vec<String>>(text) {
        return list;
    }
    text.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

fn elem_of(outlet: &Outlet) -> Option<(Elem, Vec<i64>)> {
    match outlet.dtype() {
        ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } => Some((Elem::F32, shape.to_vec())),
        ValueType::Tensor { ty: TensorElementType::Float64, shape, .. } => Some((Elem::F64, shape.to_vec())),
        _ => None,
    }
}

/// ONNX's name for an element type, as model exporters and Netron show it.
fn onnx_name(ty: &TensorElementType) -> String {
    match ty {
        TensorElementType::Float32 => "float".into(),
        TensorElementType::Float64 => "double".into(),
        TensorElementType::Int64 => "int64".into(),
        TensorElementType::Int32 => "int32".into(),
        TensorElementType::String => "string".into(),
        TensorElementType::Bool => "bool".into(),
        other => other.to_string(),
    }
}

fn describe(dtype: &ValueType) -> String {
    match dtype {
        ValueType::Tensor { ty, shape, .. } => {
            let dims: Vec<String> = shape.iter().map(|d| if *d < 0 { "N".to_string() } else { d.to_string() }).collect();
            format!("{} [{}]", onnx_name(ty), dims.join(", "))
        }
        ValueType::Sequence(inner) => format!("seq({})", describe(inner)),
        ValueType::Map { key, value } => format!("map({}, {})", onnx_name(key), onnx_name(value)),
        ValueType::Optional(inner) => format!("optional({})", describe(inner)),
    }
}

type Inputs = (InputLayout, Vec<String>, FeatureSource);

fn inputs(
    location: &str,
    spec: &ModelSpec,
    outlets: &[Outlet],
    metadata_features: Option<Vec<String>>,
    problems: &mut Vec<Problem>,
) -> Option<Inputs> {
    let key = format!("models.{}.features", spec.role.name());
    let typed: Vec<(String, Elem, Vec<i64>)> = outlets
        .iter()
        .filter_map(|o| match elem_of(o) {
            Some((elem, shape)) => Some((o.name().to_string(), elem, shape)),
            None => {
                problems.push(
                    Problem::new(
                        format!("{location}: input \"{}\"", o.name()),
                        format!("is {}; canary-replay feeds float or double tensors", describe(o.dtype())),
                    )
                    .fix("export the model with float inputs (skl2onnx: FloatTensorType)"),
                );
                None
            }
        })
        .collect();
    if typed.len() != outlets.len() {
        return None;
    }
    let (scenario, metadata) = (spec.features.clone(), metadata_features.filter(|f| !f.is_empty()));
    if let [(name, elem, shape)] = typed.as_slice() {
        if shape.len() == 2 {
            let (features, source) = match (scenario, metadata) {
                (Some(f), _) => (f, FeatureSource::Scenario),
                (None, Some(f)) => (f, FeatureSource::Metadata),
                (None, None) if shape[1] == 1 => (vec![name.clone()], FeatureSource::InputNames),
                (None, None) => {
                    let width = if shape[1] < 0 { "F".to_string() } else { shape[1].to_string() };
                    problems.push(
                        Problem::new(
                            format!("{location}: input \"{name}\""),
                            format!("takes [N, {width}] features, but the model has no feature_names metadata"),
                        )
                        .fix(format!("list the feature columns in input order: [features] columns = [...] or {key} = [...]")),
                    );
                    return None;
                }
            };
            if shape[1] >= 0 && features.len() != shape[1] as usize {
                let from = match source {
                    FeatureSource::Scenario => "the scenario lists",
                    _ => "its feature_names metadata lists",
                };
                problems.push(
                    Problem::new(
                        format!("{location}: input \"{name}\""),
                        format!("expects {} features per row, but {from} {} columns", shape[1], features.len()),
                    )
                    .fix(format!("list exactly the model's {} feature columns, in training order ({key})", shape[1])),
                );
                return None;
            }
            return Some((InputLayout::Matrix { name: name.clone(), elem: *elem }, features, source));
        }
    }
    // One input per feature.
    let mut per = Vec::new();
    for (name, elem, shape) in &typed {
        let column_like = shape.len() == 1 || (shape.len() == 2 && (shape[1] == 1 || shape[1] < 0));
        if !column_like {
            problems.push(Problem::new(
                format!("{location}: input \"{name}\""),
                format!("has shape {shape:?}; expected [N, F] for a single input, or [N, 1] per feature"),
            ));
            return None;
        }
        per.push((name.clone(), *elem, shape.len()));
    }
    let (features, source) = match scenario {
        Some(f) if f.len() == per.len() => (f, FeatureSource::Scenario),
        Some(f) => {
            problems.push(
                Problem::new(
                    location.to_string(),
                    format!("has {} inputs (one per feature), but the scenario lists {} columns", per.len(), f.len()),
                )
                .fix(format!("list one column per input, in input order ({key}), or remove the list to map inputs by name")),
            );
            return None;
        }
        None => (per.iter().map(|(n, _, _)| n.clone()).collect(), FeatureSource::InputNames),
    };
    Some((InputLayout::PerFeature { inputs: per }, features, source))
}

fn output(location: &str, spec: &ModelSpec, outlets: &[Outlet], problems: &mut Vec<Problem>) -> Option<(String, OutputKind)> {
    let key = format!("models.{}.output", spec.role.name());
    let listing = || outlets.iter().map(|o| format!("{} ({})", o.name(), describe(o.dtype()))).collect::<Vec<_>>().join(", ");
    let chosen = match &spec.output {
        Some(name) => match outlets.iter().find(|o| o.name() == name) {
            Some(o) => o,
            None => {
                problems.push(
                    Problem::new(
                        format!("{location}: output \"{name}\""),
                        format!("does not exist; the model's outputs are: {}", listing()),
                    )
                    .fix(format!("set {key} to one of them")),
                );
                return None;
            }
        },
        None => {
            let floats: Vec<&Outlet> = outlets.iter().filter(|o| elem_of(o).is_some()).collect();
            match (outlets.iter().find(|o| o.name() == "probabilities"), floats.as_slice()) {
                (Some(o), _) => o,
                (None, [only]) => only,
                _ => match outlets.iter().find(|o| matches!(o.dtype(), ValueType::Sequence(_))) {
                    Some(o) if floats.is_empty() => o,
                    _ if outlets.len() == 1 => &outlets[0],
                    _ => {
                        problems.push(
                            Problem::new(location.to_string(), format!("has several outputs: {}", listing()))
                                .fix(format!("name the one holding the score: {key} = \"...\"")),
                        );
                        return None;
                    }
                },
            }
        }
    };
    let name = chosen.name().to_string();
    let class_key = format!("models.{}.class", spec.role.name());
    match chosen.dtype() {
        ValueType::Tensor { ty: TensorElementType::Float32 | TensorElementType::Float64, shape, .. } => {
            let width = if shape.len() == 2 { shape[1] } else { 1 };
            let class = match &spec.class {
                Some(Class::Key(k)) => {
                    problems.push(
                        Problem::new(
                            format!("{location}: output \"{name}\""),
                            format!("is a tensor, so {class_key} = \"{k}\" (a ZipMap key) cannot pick a column"),
                        )
                        .fix(format!("give the column number: {class_key} = 1")),
                    );
                    return None;
                }
                Some(Class::Index(c)) => Some(*c),
                None => None,
            };
            if spec.transform == Transform::Softmax && width == 1 {
                problems.push(
                    Problem::new(
                        format!("{location}: output \"{name}\""),
                        "has one column, so models.*.transform = \"softmax\" has no classes to normalise over",
                    )
                    .fix(format!("a single logit takes models.{}.transform = \"sigmoid\"", spec.role.name())),
                );
                return None;
            }
            if let Some(c) = class {
                if width > 0 && c >= width {
                    let fix = if width == 1 {
                        format!("a single column is the score itself: remove {class_key}, or set it to 0")
                    } else {
                        format!("pick a column from 0 to {}: {class_key} = <column>", width - 1)
                    };
                    problems.push(
                        Problem::new(
                            format!("{location}: output \"{name}\""),
                            format!("has {width} column(s), so {class_key} = {c} is out of range"),
                        )
                        .fix(fix),
                    );
                    return None;
                }
            } else if width > 2 {
                problems.push(
                    Problem::new(format!("{location}: output \"{name}\""), format!("has {width} class columns"))
                        .fix(format!("pick the one to compare: {class_key} = <column>")),
                );
                return None;
            }
            let columns = usize::try_from(width).ok().filter(|w| *w > 0);
            Some((name, OutputKind::Tensor { class: class.map(|c| c as usize), transform: spec.transform, columns }))
        }
        ValueType::Sequence(inner) => match inner.as_ref() {
            ValueType::Map { key, value: TensorElementType::Float32 } => {
                if !spec.transform.is_none() {
                    problems.push(
                        Problem::new(
                            format!("{location}: output \"{name}\""),
                            "is a ZipMap of probabilities: there is nothing to transform",
                        )
                        .fix(format!("remove models.{}.transform", spec.role.name())),
                    );
                    return None;
                }
                let key = match (key, &spec.class) {
                    (TensorElementType::Int64, None) => Some(ZipKey::Int(1)),
                    (TensorElementType::Int64, Some(Class::Index(k))) => Some(ZipKey::Int(*k)),
                    (TensorElementType::Int64, Some(Class::Key(k))) => match k.parse() {
                        Ok(k) => Some(ZipKey::Int(k)),
                        Err(_) => {
                            problems.push(
                                Problem::new(
                                    format!("{location}: output \"{name}\""),
                                    format!("is a ZipMap keyed by int64 class ids, so {class_key} = \"{k}\" matches no key"),
                                )
                                .fix(format!("give the class id as a number: {class_key} = 1")),
                            );
                            return None;
                        }
                    },
                    (TensorElementType::String, None) => None,
                    (TensorElementType::String, Some(class)) => Some(ZipKey::Text(match class {
                        Class::Index(k) => k.to_string(),
                        Class::Key(k) => k.clone(),
                    })),
                    (other, _) => {
                        problems.push(Problem::new(
                            format!("{location}: output \"{name}\""),
                            format!("is a ZipMap keyed by {}, which is not supported", onnx_name(other)),
                        ));
                        return None;
                    }
                };
                Some((name, OutputKind::ZipMap { key }))
            }
            _ => {
                problems.push(
                    Problem::new(
                        format!("{location}: output \"{name}\""),
                        format!("is {}; the score must be a float tensor or a ZipMap", describe(chosen.dtype())),
                    )
                    .fix("re-export classifiers with zipmap=False (skl2onnx: options={id(model): {'zipmap': False}})"),
                );
                None
            }
        },
        other => {
            let fix = if outlets.len() == 1 {
                "it is the model's only output: export the scores or probabilities as float (skl2onnx: a classifier's `probabilities`; a regressor's prediction as float)".to_string()
            } else {
                format!("point {key} at the output with scores or probabilities; outputs: {}", listing())
            };
            problems.push(
                Problem::new(format!("{location}: output \"{name}\""), format!("is {}; the score must be a float tensor", describe(other)))
                    .fix(fix),
            );
            None
        }
    }
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
