//! `spin:variables/variables@3.0.0`: the module's resolved variables.

use wasmtime::component::Accessor;

use super::bindings::spin::variables::variables::{self, Error};
use super::{SpinHost, SpinView};

/// The value of `name`, or the error the guest gets (naming the variable, never a value).
pub(crate) fn lookup(view: &SpinView<'_>, name: &str) -> Result<String, (bool, String)> {
    if !spark_manifest::valid_variable_name(name) {
        return Err((false, format!("'{name}' is not a variable name")));
    }
    view.state
        .app
        .variables
        .get(name)
        .cloned()
        .ok_or_else(|| (true, format!("no variable '{name}' for this component")))
}

impl<U> variables::HostWithStore<U> for SpinHost {
    async fn get(
        accessor: &Accessor<U, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, Error>> {
        Ok(accessor.with(|mut access| {
            let view = access.get();
            lookup(&view, &name).map_err(|(undefined, m)| match undefined {
                true => Error::Undefined(m),
                false => Error::InvalidName(m),
            })
        }))
    }
}

impl variables::Host for SpinView<'_> {}
