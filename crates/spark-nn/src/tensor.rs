//! Element types, the input check every `compute` passes before a backend sees it, and the
//! zero inputs a model is warmed with.
//!
//! The decision worth knowing: the check is complete, not a sanity check. Count, names, rank,
//! every fixed dimension, element type and the exact data length (with overflow-checked
//! arithmetic) are verified against the model's signature and the module's limits; whatever
//! passes is exactly what a well-formed caller of the backend would pass.

use wasmtime_wasi_nn::Tensor;
use wasmtime_wasi_nn::backend::NamedTensor;
use wasmtime_wasi_nn::wit::TensorType;

use crate::config::{MAX_INPUTS, MAX_TENSOR_RANK, NnLimits};
use crate::error::NnError;
use crate::model::ModelInfo;

/// The element types Spark's backends exchange with guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// Unsigned byte.
    U8,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
    /// IEEE 754 half-precision float (no backend here computes with it; refused up front).
    F16,
    /// bfloat16 (no backend here computes with it; refused up front).
    Bf16,
}

impl ElemType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            ElemType::U8 => 1,
            ElemType::F16 | ElemType::Bf16 => 2,
            ElemType::F32 | ElemType::I32 => 4,
            ElemType::F64 | ElemType::I64 => 8,
        }
    }

    /// From ONNX's `TensorProto.DataType`; `None` for types wasi-nn cannot carry.
    pub fn from_onnx(code: i32) -> Option<ElemType> {
        match code {
            1 => Some(ElemType::F32),
            2 => Some(ElemType::U8),
            6 => Some(ElemType::I32),
            7 => Some(ElemType::I64),
            10 => Some(ElemType::F16),
            11 => Some(ElemType::F64),
            16 => Some(ElemType::Bf16),
            _ => None,
        }
    }

    /// From wasi-nn's `tensor-type`.
    pub fn from_wit(ty: TensorType) -> ElemType {
        match ty {
            TensorType::Fp16 => ElemType::F16,
            TensorType::Fp32 => ElemType::F32,
            TensorType::Fp64 => ElemType::F64,
            TensorType::Bf16 => ElemType::Bf16,
            TensorType::U8 => ElemType::U8,
            TensorType::I32 => ElemType::I32,
            TensorType::I64 => ElemType::I64,
        }
    }

    /// Into wasi-nn's `tensor-type`.
    pub fn to_wit(self) -> TensorType {
        match self {
            ElemType::F16 => TensorType::Fp16,
            ElemType::F32 => TensorType::Fp32,
            ElemType::F64 => TensorType::Fp64,
            ElemType::Bf16 => TensorType::Bf16,
            ElemType::U8 => TensorType::U8,
            ElemType::I32 => TensorType::I32,
            ElemType::I64 => TensorType::I64,
        }
    }

    /// Types every backend here computes with (half-precision types are refused up front).
    pub fn supported(self) -> bool {
        !matches!(self, ElemType::F16 | ElemType::Bf16)
    }
}

/// Bytes a tensor of `dims` and `ty` must hold; `None` on overflow or a zero dimension.
pub fn expected_len(dims: &[u32], ty: ElemType) -> Option<usize> {
    dims.iter().try_fold(ty.size(), |acc, &d| {
        if d == 0 {
            None
        } else {
            acc.checked_mul(d as usize)
        }
    })
}

/// Zero inputs of the model's declared shapes (free dimensions as 1).
pub(crate) fn zeros(info: &ModelInfo) -> Result<Vec<NamedTensor>, NnError> {
    info.inputs
        .iter()
        .map(|spec| {
            let ty = spec.ty.filter(|t| t.supported()).ok_or_else(|| {
                NnError::Unsupported(format!("input '{}' has no usable type", spec.name))
            })?;
            let dims: Vec<u32> = spec.dims.iter().map(|d| d.unwrap_or(1) as u32).collect();
            let len = expected_len(&dims, ty)
                .ok_or_else(|| NnError::InvalidInput(format!("input '{}' shape", spec.name)))?;
            Ok(NamedTensor {
                name: spec.name.clone(),
                tensor: Tensor::new(dims, ty.to_wit(), vec![0; len]),
            })
        })
        .collect()
}

/// Checks `inputs` against the model and the module's limits. A single unnamed-or-misnamed
/// tensor for a single-input model is renamed to that input.
pub fn validate(
    info: &ModelInfo,
    inputs: &mut [NamedTensor],
    limits: &NnLimits,
) -> Result<(), NnError> {
    let bad = |m: String| Err(NnError::InvalidInput(m));
    if inputs.is_empty() || inputs.len() > MAX_INPUTS {
        return bad(format!(
            "{} input tensors given; 1 to {MAX_INPUTS} allowed",
            inputs.len()
        ));
    }
    if inputs.len() == 1 && info.inputs.len() == 1 && inputs[0].name != info.inputs[0].name {
        inputs[0].name = info.inputs[0].name.clone();
    }
    for (i, input) in inputs.iter().enumerate() {
        if inputs[..i].iter().any(|o| o.name == input.name) {
            return bad(format!("input '{}' given twice", input.name));
        }
        let Some(spec) = info.inputs.iter().find(|s| s.name == input.name) else {
            let names: Vec<&str> = info.inputs.iter().map(|s| s.name.as_str()).collect();
            return bad(format!(
                "the model has no input '{}' (inputs: {names:?})",
                input.name
            ));
        };
        let t = &input.tensor;
        let ty = ElemType::from_wit(t.ty);
        if !ty.supported() {
            return Err(NnError::Unsupported(format!(
                "input '{}': element type {ty:?}",
                input.name
            )));
        }
        if spec.ty.is_some_and(|want| want != ty) {
            return bad(format!(
                "input '{}' is {ty:?}; the model expects {:?}",
                input.name,
                spec.ty.expect("checked")
            ));
        }
        if t.dimensions.len() > MAX_TENSOR_RANK {
            return bad(format!(
                "input '{}' has {} dimensions; at most {MAX_TENSOR_RANK}",
                input.name,
                t.dimensions.len()
            ));
        }
        if !spec.dims.is_empty() && spec.dims.len() != t.dimensions.len() {
            return bad(format!(
                "input '{}' has shape {:?}; the model expects rank {}",
                input.name,
                t.dimensions,
                spec.dims.len()
            ));
        }
        for (axis, (&got, want)) in t.dimensions.iter().zip(&spec.dims).enumerate() {
            if want.is_some_and(|w| w != u64::from(got)) {
                return bad(format!(
                    "input '{}' dimension {axis} is {got}; the model expects {}",
                    input.name,
                    want.expect("checked")
                ));
            }
        }
        let Some(len) = expected_len(&t.dimensions, ty) else {
            return bad(format!(
                "input '{}' has shape {:?}: a zero dimension or a size that overflows",
                input.name, t.dimensions
            ));
        };
        if len as u64 > limits.max_tensor_bytes {
            return Err(NnError::TooLarge(format!(
                "input '{}' is {len} bytes; this module may pass at most {}",
                input.name, limits.max_tensor_bytes
            )));
        }
        if t.data.len() != len {
            return bad(format!(
                "input '{}' of shape {:?} and type {ty:?} needs {len} bytes of data, got {}",
                input.name,
                t.dimensions,
                t.data.len()
            ));
        }
    }
    for spec in &info.inputs {
        if !inputs.iter().any(|i| i.name == spec.name) {
            return bad(format!("missing input '{}'", spec.name));
        }
    }
    Ok(())
}

/// Checks what a backend returned before it reaches the guest.
pub fn check_output(backend: &str, output: &NamedTensor) -> Result<(), NnError> {
    let ty = ElemType::from_wit(output.tensor.ty);
    match expected_len(&output.tensor.dimensions, ty) {
        Some(len) if len == output.tensor.data.len() => Ok(()),
        _ if output.tensor.dimensions.contains(&0) && output.tensor.data.is_empty() => Ok(()),
        _ => Err(NnError::backend(
            backend,
            format!(
                "output '{}' has shape {:?} but {} bytes",
                output.name,
                output.tensor.dimensions,
                output.tensor.data.len()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TensorSpec;

    fn info() -> ModelInfo {
        ModelInfo {
            inputs: vec![TensorSpec {
                name: "x".into(),
                ty: Some(ElemType::F32),
                dims: vec![None, Some(3), Some(48), Some(192)],
            }],
            outputs: vec![],
        }
    }

    fn input(name: &str, dims: Vec<u32>, ty: TensorType, len: usize) -> Vec<NamedTensor> {
        vec![NamedTensor {
            name: name.into(),
            tensor: Tensor::new(dims, ty, vec![0; len]),
        }]
    }

    fn check(mut inputs: Vec<NamedTensor>) -> Result<(), NnError> {
        validate(&info(), &mut inputs, &NnLimits::default())
    }

    #[test]
    fn accepts_a_well_formed_input_and_renames_a_single_one() {
        let mut inputs = input(
            "image",
            vec![1, 3, 48, 192],
            TensorType::Fp32,
            4 * 3 * 48 * 192,
        );
        validate(&info(), &mut inputs, &NnLimits::default()).unwrap();
        assert_eq!(inputs[0].name, "x");
    }

    #[test]
    fn refuses_wrong_length_shape_type_and_overflow() {
        let n = 4 * 3 * 48 * 192;
        let short = check(input("x", vec![1, 3, 48, 192], TensorType::Fp32, n - 1));
        assert!(matches!(short, Err(NnError::InvalidInput(_))), "{short:?}");
        let shape = check(input("x", vec![1, 3, 48, 193], TensorType::Fp32, n));
        assert!(matches!(shape, Err(NnError::InvalidInput(_))), "{shape:?}");
        let rank = check(input("x", vec![3, 48, 192], TensorType::Fp32, n));
        assert!(matches!(rank, Err(NnError::InvalidInput(_))), "{rank:?}");
        let ty = check(input("x", vec![1, 3, 48, 192], TensorType::I64, 2 * n));
        assert!(matches!(ty, Err(NnError::InvalidInput(_))), "{ty:?}");
        let half = check(input("x", vec![1, 3, 48, 192], TensorType::Fp16, n / 2));
        assert!(matches!(half, Err(NnError::Unsupported(_))), "{half:?}");
        let huge = check(input("x", vec![u32::MAX, 3, 48, 192], TensorType::Fp32, 0));
        assert!(matches!(huge, Err(NnError::TooLarge(_))), "{huge:?}");
        assert_eq!(expected_len(&[u32::MAX; 4], ElemType::F64), None);
        let zero = check(input("x", vec![0, 3, 48, 192], TensorType::Fp32, 0));
        assert!(matches!(zero, Err(NnError::InvalidInput(_))), "{zero:?}");
    }

    #[test]
    fn refuses_tensors_over_the_module_limit() {
        let limits = NnLimits {
            max_tensor_bytes: 1000,
            ..NnLimits::default()
        };
        let mut inputs = input("x", vec![1, 3, 48, 192], TensorType::Fp32, 4 * 3 * 48 * 192);
        let err = validate(&info(), &mut inputs, &limits);
        assert!(matches!(err, Err(NnError::TooLarge(_))), "{err:?}");
    }

    #[test]
    fn refuses_unknown_duplicate_and_missing_inputs() {
        let two = |a: &str, b: &str| {
            let mut v = input(a, vec![1, 3, 48, 192], TensorType::Fp32, 4 * 3 * 48 * 192);
            v.extend(input(
                b,
                vec![1, 3, 48, 192],
                TensorType::Fp32,
                4 * 3 * 48 * 192,
            ));
            v
        };
        assert!(matches!(
            check(two("x", "x")),
            Err(NnError::InvalidInput(_))
        ));
        assert!(matches!(
            check(two("x", "y")),
            Err(NnError::InvalidInput(_))
        ));
        assert!(matches!(check(vec![]), Err(NnError::InvalidInput(_))));
    }
}
