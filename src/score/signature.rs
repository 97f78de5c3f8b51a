//! A model's signature read against the scenario: which inputs carry the features (one `[N, F]`
//! tensor, or one per feature) and in what order, and which output holds the score — each
//! mismatch a problem naming the model, the input or output and the fix.

use ort::value::{Outlet, TensorElementType, ValueType};

use super::model::{Elem, FeatureSource, InputLayout, OutputKind, ZipKey};
use crate::error::Problem;
use crate::scenario::{Class, ModelSpec, Transform};

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

pub(super) fn inputs(
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

pub(super) fn output(location: &str, spec: &ModelSpec, outlets: &[Outlet], problems: &mut Vec<Problem>) -> Option<(String, OutputKind)> {
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
