//! Embeds the text-orientation model (`ch_ppocr_mobile_v2.0_cls_infer.onnx`, from the PyPI
//! package `rapidocr-onnxruntime` 1.4.4, Apache-2.0) into the component, so one `.wasm` is
//! all a node needs. The model is fetched by `scripts/fetch-model.sh` into the cache
//! (`$SPARK_NN_CACHE`, default `~/.cache/spark-nn`), never committed. Without it the guest is
//! built with no embedded model and serves only models the host registers (`?model=NAME`).

use std::path::PathBuf;

const MODEL: &str = "models/ch_ppocr_mobile_v2.0_cls_infer.onnx";

fn main() {
    println!("cargo:rerun-if-env-changed=SPARK_NN_MODEL");
    println!("cargo:rerun-if-env-changed=SPARK_NN_CACHE");
    let path = std::env::var_os("SPARK_NN_MODEL")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("SPARK_NN_CACHE").map(|c| PathBuf::from(c).join(MODEL)))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/spark-nn").join(MODEL))
        });
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("model.onnx");
    let bytes = match &path {
        Some(p) => {
            println!("cargo:rerun-if-changed={}", p.display());
            std::fs::read(p).ok()
        }
        None => None,
    };
    match bytes {
        Some(bytes) => std::fs::write(&out, bytes).expect("write model"),
        None => {
            println!(
                "cargo:warning=no model at {}: run scripts/fetch-model.sh; building without an embedded model",
                path.map(|p| p.display().to_string()).unwrap_or_default()
            );
            std::fs::write(&out, b"").expect("write empty model");
        }
    }
}
