//! `spark:nn/info`: a small Spark interface through which a guest learns which backend and
//! device served its last inference, what failed before it, and the full error text.
//!
//! The decision worth knowing: this is an *extra* import next to the standard `wasi:nn`, not a
//! change to it. wasi-nn's error resource carries only a code (and the `wasmtime-wasi-nn` glue
//! a generic message), so the details live here.

use wasmtime::component::HasData;

use crate::host::NnView;
use crate::router;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/info.wit",
        world: "spark:nn/host",
    });
}

use bindings::spark::nn::info::{self as wit, Attempt, Outcome};

/// Adds `spark:nn/info` to a linker.
pub(crate) fn add_to_linker<T: 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> NnView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasInfo>(linker, get)
}

struct HasInfo;

impl HasData for HasInfo {
    type Data<'a> = NnView<'a>;
}

impl wit::Host for NnView<'_> {
    fn last_outcome(&mut self) -> Option<Outcome> {
        self.nn.last_outcome().map(|o| to_wit(&o))
    }
}

fn to_wit(o: &router::Outcome) -> Outcome {
    let attempts = |list: &[router::Attempt]| {
        list.iter()
            .map(|a| Attempt {
                backend: a.backend.clone(),
                error: a.error.clone(),
            })
            .collect()
    };
    Outcome {
        model: o.model.clone(),
        target: o.target.name().to_owned(),
        backend: o.backend.clone(),
        device: o.device.map(|d| {
            match d {
                crate::DeviceClass::Cpu => "cpu",
                crate::DeviceClass::Gpu => "gpu",
                crate::DeviceClass::Npu => "npu",
            }
            .to_owned()
        }),
        fallbacks: attempts(&o.fallbacks),
        skipped: attempts(&o.skipped),
        micros: o.micros,
        error: o.error.clone(),
    }
}
