//! WASI 0.3 release-candidate interfaces, served by the final 0.3.0 implementation where the
//! two are identical.
//!
//! SDKs made before WASI 0.3.0 was final import (and export) interfaces named
//! `wasi:…@0.3.0-rc-2026-03-15`; some components import both that and `wasi:…@0.3.0`.
//! Wasmtime's linker matches `0.3.x` versions by semver but never a prerelease, so those
//! imports would find nothing. The 2026-03-15 release candidate is 0.3.0 but for a feature gate
//! (`wasi:cli/exit.exit-with-code` was `@unstable`, is `@since(0.3.0)`) and a link in a doc
//! comment: the WIT of the `wasip3` crates `0.6.0+wasi-0.3.0-rc-2026-03-15` and
//! `0.9.0+wasi-0.3.0` (and Wasmtime 48's own) differ in nothing else. So the node links the
//! same implementation under its name too.
//!
//! The decision worth knowing: the name is changed in the component, not in the linker.
//! Wasmtime's linker cannot give one definition a second name, and bindings generated for the
//! release candidate would duplicate every WASI 0.3 host interface. Before it is compiled, a
//! component's top-level import and export names `X@0.3.0-rc-2026-03-15` become
//! `X@0.3.0+rc-2026-03-15`: semver build metadata, which Wasmtime's lookup resolves to the
//! `X@0.3.0` implementation, while the name stays distinct from an `X@0.3.0` import the
//! component may also have. Wasmtime still type-checks every function and type of the import
//! against that implementation, so a difference would fail the link, not misbehave. Other
//! release candidates differ from 0.3.0 and are left as they are: their imports are refused
//! by name, like any interface the node does not provide.

use wasm_encoder::reencode::{RoundtripReencoder, component_utils};
use wasmparser::{
    BinaryReader, ComponentExportSectionReader, ComponentExternName, ComponentImportSectionReader,
};

/// Why a component's release-candidate names could not be renamed (the component is then
/// refused as invalid).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RenameError {
    /// Its sections, imports or exports could not be read.
    #[error("the component's sections could not be read")]
    Parse(#[from] wasmparser::BinaryReaderError),
    /// An import's or export's type could not be written back.
    #[error("an import or export type could not be re-encoded")]
    Reencode(#[from] wasm_encoder::reencode::Error),
}

/// The release candidates identical to `0.3.0` (see the module docs).
const IDENTICAL: &[&str] = &["0.3.0-rc-2026-03-15"];

/// Section ids of a component's imports and exports.
const IMPORT_SECTION: u8 = 10;
const EXPORT_SECTION: u8 = 11;
/// A component's preamble: magic, version, layer.
const PREAMBLE: usize = 8;

/// The name the node links a release-candidate interface under, if it is one of those
/// identical to 0.3.0: `wasi:http/types@0.3.0-rc-2026-03-15` → `wasi:http/types@0.3.0+rc-2026-03-15`.
pub(crate) fn linked_name(name: &str) -> Option<String> {
    let (interface, version) = name.split_once('@')?;
    if !interface.starts_with("wasi:") || !IDENTICAL.contains(&version) {
        return None;
    }
    let (release, candidate) = version.split_once('-')?;
    Some(format!("{interface}@{release}+{candidate}"))
}

/// The component with its release-candidate import and export names renamed (see the module
/// docs), or `None` when it has none. Only the top level is touched: nested components'
/// imports are satisfied inside the component, not by the node.
pub(crate) fn rename(bytes: &[u8]) -> Result<Option<Vec<u8>>, RenameError> {
    if bytes.len() < PREAMBLE || !IDENTICAL.iter().any(|rc| contains(bytes, rc.as_bytes())) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(bytes.len() + 64);
    out.extend_from_slice(&bytes[..PREAMBLE]);
    let mut reader = BinaryReader::new(&bytes[PREAMBLE..], PREAMBLE);
    let mut renamed = false;
    while !reader.eof() {
        let start = reader.original_position();
        let id = reader.read_u8()?;
        let size = reader.read_var_u32()? as usize;
        let contents_at = reader.original_position();
        let contents = reader.read_bytes(size)?;
        let section = match id {
            IMPORT_SECTION => imports(contents, contents_at)?,
            EXPORT_SECTION => exports(contents, contents_at)?,
            _ => None,
        };
        match section {
            Some(section) => {
                renamed = true;
                out.push(id);
                wasm_encoder::Encode::encode(&section, &mut out);
            }
            None => out.extend_from_slice(&bytes[start..reader.original_position()]),
        }
    }
    Ok(renamed.then_some(out))
}

/// A section's items re-encoded with renamed names, or `None` if none needed renaming.
enum Section {
    Imports(wasm_encoder::ComponentImportSection),
    Exports(wasm_encoder::ComponentExportSection),
}

impl wasm_encoder::Encode for Section {
    fn encode(&self, sink: &mut Vec<u8>) {
        match self {
            Section::Imports(section) => section.encode(sink),
            Section::Exports(section) => section.encode(sink),
        }
    }
}

fn renamed(name: ComponentExternName<'_>) -> (wasm_encoder::ComponentExternName<'_>, bool) {
    let new = linked_name(name.name);
    let changed = new.is_some();
    let mut encoded = wasm_encoder::ComponentExternName::from(name);
    if let Some(new) = new {
        encoded.name = new.into();
    }
    (encoded, changed)
}

fn imports(contents: &[u8], offset: usize) -> Result<Option<Section>, RenameError> {
    let reader = ComponentImportSectionReader::new(BinaryReader::new(contents, offset))?;
    let mut section = wasm_encoder::ComponentImportSection::new();
    let mut any = false;
    for import in reader {
        let import = import?;
        let (name, changed) = renamed(import.name);
        any |= changed;
        let ty = component_utils::component_type_ref(&mut RoundtripReencoder, import.ty)?;
        section.import(name, ty);
    }
    Ok(any.then_some(Section::Imports(section)))
}

fn exports(contents: &[u8], offset: usize) -> Result<Option<Section>, RenameError> {
    let reader = ComponentExportSectionReader::new(BinaryReader::new(contents, offset))?;
    let mut section = wasm_encoder::ComponentExportSection::new();
    let mut any = false;
    for export in reader {
        let export = export?;
        let (name, changed) = renamed(export.name);
        any |= changed;
        let ty = export
            .ty
            .map(|ty| component_utils::component_type_ref(&mut RoundtripReencoder, ty))
            .transpose()?;
        section.export(name, export.kind.into(), export.index, ty);
    }
    Ok(any.then_some(Section::Exports(section)))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_identical_wasi_candidates_are_renamed() {
        assert_eq!(
            linked_name("wasi:http/types@0.3.0-rc-2026-03-15").as_deref(),
            Some("wasi:http/types@0.3.0+rc-2026-03-15")
        );
        assert_eq!(linked_name("wasi:http/types@0.3.0"), None);
        assert_eq!(linked_name("wasi:http/types@0.3.0-rc-2025-09-16"), None);
        assert_eq!(
            linked_name("spin:key-value/key-value@0.3.0-rc-2026-03-15"),
            None
        );
        assert_eq!(linked_name("no-version"), None);
    }

    /// A component importing one interface under both names, and exporting under the
    /// candidate's: renamed, it still validates (the names stay distinct) and says so.
    #[test]
    fn both_names_stay_distinct_and_valid() {
        let wat = r#"(component
            (import "wasi:random/random@0.3.0" (instance
                (export "get-random-u64" (func (result u64)))))
            (import "wasi:random/random@0.3.0-rc-2026-03-15" (instance $rc
                (export "get-random-u64" (func (result u64)))))
            (alias export $rc "get-random-u64" (func $f))
            (instance $out (export "get" (func $f)))
            (export "wasi:demo/out@0.3.0-rc-2026-03-15" (instance $out))
        )"#;
        let bytes = wat::parse_str(wat).unwrap();
        let renamed = rename(&bytes).unwrap().expect("renamed");
        let mut features = wasmparser::WasmFeatures::default();
        features.insert(wasmparser::WasmFeatures::COMPONENT_MODEL);
        wasmparser::Validator::new_with_features(features)
            .validate_all(&renamed)
            .expect("still a valid component");
        let names: Vec<String> = wasmparser::Parser::new(0)
            .parse_all(&renamed)
            .filter_map(Result::ok)
            .flat_map(|payload| match payload {
                wasmparser::Payload::ComponentImportSection(s) => s
                    .into_iter()
                    .map(|i| i.unwrap().name.name.to_owned())
                    .collect(),
                wasmparser::Payload::ComponentExportSection(s) => s
                    .into_iter()
                    .map(|e| e.unwrap().name.name.to_owned())
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(
            names,
            [
                "wasi:random/random@0.3.0",
                "wasi:random/random@0.3.0+rc-2026-03-15",
                "wasi:demo/out@0.3.0+rc-2026-03-15"
            ]
        );
        assert!(
            rename(&wat::parse_str("(component)").unwrap())
                .unwrap()
                .is_none()
        );
    }
}
