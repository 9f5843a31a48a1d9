//! Test images and inputs made here, so tests, B6 and `spark nn classify` need no image files:
//! text lines drawn with a built-in 5x7 bitmap font (upright, or turned 180 degrees), the PP-OCR
//! text-orientation preprocessing done on the host side (the `classify` guest does the same
//! inside), and a real ONNX model that is slow on purpose ([`slow_model`], for deadline tests).
//!
//! The decision worth knowing: the orientation classifier is real (`ch_ppocr_mobile_v2.0_cls`,
//! from the `rapidocr-onnxruntime` package) and so are these images' labels: an upright line
//! should come out as class 0 ("0") and the same line turned over as class 1 ("180").

use spark_nn::tensor::ElemType;
use spark_nn::{NamedTensor, Tensor};

/// The classifier's labels, by output index.
pub const LABELS: [&str; 2] = ["0", "180"];
/// The classifier's input: 3 x 48 x 192, float32.
pub const INPUT_SHAPE: [u32; 4] = [1, 3, 48, 192];

/// An RGB image, 8 bits per channel, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `width * height * 3` bytes, R, G, B per pixel.
    pub rgb: Vec<u8>,
}

impl Image {
    /// The image turned 180 degrees.
    pub fn rotated(&self) -> Image {
        let mut rgb = Vec::with_capacity(self.rgb.len());
        for px in self.rgb.chunks_exact(3).rev() {
            rgb.extend_from_slice(px);
        }
        Image { rgb, ..*self }
    }

    /// Binary PPM (`P6`), the simplest format the `classify` guest reads.
    pub fn to_ppm(&self) -> Vec<u8> {
        let mut out = format!("P6\n{} {}\n255\n", self.width, self.height).into_bytes();
        out.extend_from_slice(&self.rgb);
        out
    }
}

/// Lines of text used as samples (mixed letters and digits, as on labels and receipts).
pub const TEXTS: [&str; 4] = [
    "TOTAL 42.50 EUR",
    "Spark edge node 7",
    "Invoice 2024-118",
    "Keep upright please",
];

/// Draws `text` in black on white, `scale` pixels per font dot.
pub fn text_line(text: &str, scale: usize) -> Image {
    let (cw, ch, margin) = (6 * scale, 9 * scale, 4 * scale);
    let width = text.chars().count() * cw + 2 * margin;
    let height = ch + 2 * margin;
    let mut rgb = vec![255u8; width * height * 3];
    for (i, c) in text.chars().enumerate() {
        let rows = glyph(c);
        for (gy, row) in rows.iter().enumerate() {
            for gx in 0..5 {
                if row & (0x10 >> gx) == 0 {
                    continue;
                }
                // Lower-case letters sit two dots lower, so lines are not symmetric.
                let drop = if c.is_ascii_lowercase() { 2 } else { 0 };
                for dy in 0..scale {
                    for dx in 0..scale {
                        let x = margin + i * cw + gx * scale + dx;
                        let y = margin + (gy + drop) * scale + dy;
                        let p = (y * width + x) * 3;
                        rgb[p..p + 3].copy_from_slice(&[20, 20, 20]);
                    }
                }
            }
        }
    }
    Image { width, height, rgb }
}

/// PP-OCR's classifier preprocessing: resize to height 48 (width by aspect, at most 192),
/// scale to [-1, 1], channels first in OpenCV's BGR order, pad the right with zeros. The
/// `classify` guest does exactly the same.
pub fn preprocess(image: &Image) -> Vec<f32> {
    let (h, w_max) = (48usize, 192usize);
    let ratio = image.width as f32 / image.height as f32;
    let rw = ((h as f32 * ratio).ceil() as usize).clamp(1, w_max);
    let mut out = vec![0f32; 3 * h * w_max];
    for y in 0..h {
        let sy = ((y as f32 + 0.5) * image.height as f32 / h as f32 - 0.5).max(0.0);
        let (y0, fy) = (sy.floor() as usize, sy.fract());
        let y1 = (y0 + 1).min(image.height - 1);
        for x in 0..rw {
            let sx = ((x as f32 + 0.5) * image.width as f32 / rw as f32 - 0.5).max(0.0);
            let (x0, fx) = (sx.floor() as usize, sx.fract());
            let x1 = (x0 + 1).min(image.width - 1);
            for c in 0..3 {
                let at =
                    |xx: usize, yy: usize| image.rgb[(yy * image.width + xx) * 3 + 2 - c] as f32;
                let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
                let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
                let v = top * (1.0 - fy) + bottom * fy;
                out[c * h * w_max + y * w_max + x] = (v / 255.0 - 0.5) / 0.5;
            }
        }
    }
    out
}

/// The classifier's input tensor for `image`.
pub fn input(image: &Image) -> Vec<NamedTensor> {
    let data = preprocess(image)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    vec![NamedTensor {
        name: "x".into(),
        tensor: Tensor::new(INPUT_SHAPE.to_vec(), ElemType::F32.to_wit(), data),
    }]
}

/// Index and score of the largest value of a float32 output.
pub fn top1(output: &Tensor) -> Option<(usize, f32)> {
    output
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// A real ONNX model that takes the classifier's input (`x`, 1x3x48x192 float32) and is slow
/// on purpose: it makes a (192·`tiles`)-square matrix of it, squares that `rounds` times
/// (2·(192·`tiles`)³ flops each) and answers the mean (`y`, 1x1). For tests of deadlines and
/// abandoned computations: a model no backend can finish quickly, run for real.
pub fn slow_model(tiles: i64, rounds: usize) -> Vec<u8> {
    use prost::Message as _;
    use tract_onnx::pb;
    let node = |op: &str, inputs: &[&str], output: &str| pb::NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: vec![output.to_owned()],
        name: output.to_owned(),
        ..Default::default()
    };
    let int64s = |name: &str, values: Vec<i64>| pb::TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: 7,
        int64_data: values,
        ..Default::default()
    };
    let value = |name: &str, dims: &[i64]| pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: 1,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| pb::tensor_shape_proto::Dimension {
                            value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut nodes = vec![
        node("Reshape", &["x", "rows"], "a"),
        node("Transpose", &["a"], "at"),
        node("MatMul", &["at", "a"], "g"),
        node("Tile", &["g", "tiles"], "m0"),
    ];
    for i in 0..rounds {
        let (from, to) = (format!("m{i}"), format!("m{}", i + 1));
        nodes.push(node("MatMul", &[&from, &from], &to));
    }
    nodes.push(node("ReduceMean", &[&format!("m{rounds}")], "y"));
    let model = pb::ModelProto {
        ir_version: 7,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "spark-testkit nn::samples::slow_model".into(),
        graph: Some(pb::GraphProto {
            name: "slow".into(),
            node: nodes,
            initializer: vec![
                int64s("rows", vec![144, 192]),
                int64s("tiles", vec![tiles, tiles]),
            ],
            input: vec![value("x", &[1, 3, 48, 192])],
            output: vec![value("y", &[1, 1])],
            ..Default::default()
        }),
        ..Default::default()
    };
    model.encode_to_vec()
}

/// 5x7 glyphs, one byte per row, bit 4 leftmost. Unknown characters are blank.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        _ => [0; 7],
    }
}
