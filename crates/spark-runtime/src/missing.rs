//! Imports the node does not provide (Spin's sqlite, redis, mqtt, llm, ...): found at link
//! time, listed on the [`Prepared`](crate::Prepared) component, and linked as traps that name
//! the interface when called.
//!
//! The decision worth knowing: the runtime always links them as traps and records their
//! names; whether a module may run with them is the module's choice (`missing_imports`), which
//! the node checks when it builds the module (refused with their names unless the module
//! says `"trap"`). The compiled code is shared by every module using the same component, so
//! the policy cannot be part of the link. Only whole top-level instances the linker lacks are
//! stubbed: an interface Spark provides with a different shape (a function missing, a wrong
//! type) is still a link error, as before.

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre, Linker, ResourceType};

use crate::host::Host;

/// Most missing interfaces a component may have before the link gives up (each needs a
/// pass of the linker's type check).
const MAX_MISSING: usize = 64;

/// Pre-links `component`; interfaces the linker lacks are linked as traps and named in the
/// second value, in import order. An error is Wasmtime's, for anything else that fails.
pub(crate) fn instantiate_pre(
    engine: &Engine,
    linker: &Linker<Host>,
    component: &Component,
) -> wasmtime::Result<(InstancePre<Host>, Vec<String>)> {
    let first = match linker.instantiate_pre(component) {
        Ok(pre) => return Ok((pre, Vec::new())),
        Err(e) => e,
    };
    let imports: Vec<(String, ComponentItem)> = component
        .component_type()
        .imports(engine)
        .map(|(name, item)| (name.to_owned(), item.ty))
        .collect();
    let mut stubbed = linker.clone();
    let mut missing = Vec::new();
    let mut error = first;
    loop {
        let Some(name) = unlinked_name(&error) else {
            return Err(error);
        };
        let Some(ComponentItem::ComponentInstance(instance)) = imports
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, i)| i.clone())
        else {
            return Err(error);
        };
        if missing.contains(&name) || missing.len() >= MAX_MISSING {
            return Err(error);
        }
        // Defining an export the linker has fails: the interface is there with another
        // shape, and Wasmtime's error says how.
        if stub(&mut stubbed, engine, &name, &instance).is_err() {
            return Err(error);
        }
        missing.push(name);
        match stubbed.instantiate_pre(component) {
            Ok(pre) => return Ok((pre, missing)),
            Err(e) => error = e,
        }
    }
}

/// Defines every function and resource of the import `name` as a trap.
fn stub(
    linker: &mut Linker<Host>,
    engine: &Engine,
    name: &str,
    instance: &wasmtime::component::types::ComponentInstance,
) -> wasmtime::Result<()> {
    let mut root = linker.instance(name)?;
    for (export, item) in instance.exports(engine) {
        let what = format!("{name}#{export}");
        match item.ty {
            ComponentItem::ComponentFunc(func) if func.async_() => {
                root.func_new_concurrent(export, move |_, _, _, _| {
                    let what = what.clone();
                    Box::pin(async move { Err(trap(&what)) })
                })?;
            }
            ComponentItem::ComponentFunc(_) => {
                root.func_new(export, move |_, _, _, _| Err(trap(&what)))?;
            }
            ComponentItem::Resource(_) => {
                root.resource(export, ResourceType::host::<MissingResource>(), |_, _| {
                    Ok(())
                })?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// What a module refusing its missing imports says.
pub fn refusal(missing: &[String]) -> String {
    format!(
        "component imports interfaces Spark does not provide: {} (missing_imports = \"trap\" links them as traps that fail when called)",
        missing.join(", ")
    )
}

/// The resource type of a missing interface's resources (no value of it is ever made).
struct MissingResource;

fn trap(what: &str) -> wasmtime::Error {
    let interface = what.split('#').next().unwrap_or(what);
    wasmtime::format_err!(
        "the component called {what}, but Spark does not provide {interface} (the module links it as a trap: missing_imports = \"trap\")"
    )
}

/// The import named by Wasmtime's "component imports instance `X`, but a matching
/// implementation was not found in the linker", if that is the error and `X` is absent (not
/// merely of another shape: then the error has a cause below it).
fn unlinked_name(error: &wasmtime::Error) -> Option<String> {
    let top = error.to_string();
    let rest = top.strip_prefix("component imports instance `")?;
    let (name, tail) = rest.split_once('`')?;
    if !tail.starts_with(", but a matching implementation was not found") {
        return None;
    }
    Some(name.to_owned())
}
