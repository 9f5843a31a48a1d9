//! From `.wasm` bytes to a pre-linked component: check, compile (or load the AOT artifact),
//! link against the host interfaces, and find which world it serves.
//!
//! Every step that can fail names the file and says what is wrong in terms the person
//! deploying it can act on: not Wasm, a core module, a missing import, no HTTP export.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::aot::{ArtifactCache, Verified};
use crate::error::LoadError;
use crate::host::Host;
use crate::tier::{Pending, TierStatus};

/// What a component can be asked to do.
#[derive(Clone)]
pub enum Entry {
    /// It exports `wasi:http/incoming-handler@0.2.x` (the `wasi:http/proxy` world, WASI 0.2).
    Http(ProxyPre<Host>),
    /// It exports `wasi:http/handler@0.3.x` (the `wasi:http/service` world, WASI 0.3,
    /// component-model async): one instance may serve several requests at once.
    HttpP3(ServicePre<Host>),
    /// It exports `wasi:cli/run` (the `wasi:cli/command` world).
    Command(CommandPre<Host>),
}

impl Entry {
    /// The WIT world it serves: `wasi:http/proxy` (0.2), `wasi:http/service` (0.3) or
    /// `wasi:cli/command`.
    pub fn world(&self) -> &'static str {
        match self {
            Entry::Http(_) => "wasi:http/proxy",
            Entry::HttpP3(_) => "wasi:http/service",
            Entry::Command(_) => "wasi:cli/command",
        }
    }

    /// The HTTP interface it exports, with its WASI version (`None` for a command).
    pub fn http_export(&self) -> Option<&'static str> {
        match self {
            Entry::Http(_) => Some("wasi:http/incoming-handler@0.2"),
            Entry::HttpP3(_) => Some("wasi:http/handler@0.3"),
            Entry::Command(_) => None,
        }
    }
}

/// Which worlds a module accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// An HTTP module: must export `wasi:http/incoming-handler`.
    Http,
    /// A job: a command (`wasi:cli/run`) or an HTTP component (called with a request).
    Job,
}

/// Where the native code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeSource {
    /// Compiled from the `.wasm` bytes by this load.
    Compiled,
    /// Deserialized from this node's AOT cache (an artifact it wrote and authenticated).
    AotCache,
    /// Already in memory for another module with the same component.
    Shared,
}

/// How a load went, for logs, metrics and the cold-start benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    /// Where the native code came from for this load.
    pub source: CodeSource,
    /// Size of the `.wasm`, in bytes.
    pub wasm_bytes: u64,
    /// Time to compile, or to read, authenticate and deserialize the artifact.
    pub code: Duration,
    /// Time to check the imports, pre-link and find the world.
    pub link: Duration,
    /// How the code in memory was first made (compiled or loaded from the AOT cache), and
    /// what that took: the same as `source` and `code` unless the code was `Shared`, when it
    /// is what a reload would cost once no other module holds the code.
    pub made_by: CodeSource,
    /// What making the code took (compiling, or loading the artifact), whoever made it.
    pub made_in: Duration,
}

/// A component compiled and pre-linked, ready to instantiate.
pub struct Prepared {
    /// SHA-256 of the `.wasm` bytes, lowercase hex (the AOT cache's key).
    pub digest: String,
    /// What it can be asked to do, with its pre-linked instance.
    pub entry: Entry,
    /// How the load went.
    pub report: LoadReport,
    /// Bytes of its loaded artifact image: native code with its metadata, data and memory
    /// images (what the component costs in memory when loaded).
    pub code_bytes: usize,
    /// Which tier this code is, and how long the load took to reach each tier.
    pub tier: TierStatus,
    /// Interfaces it imports that the node does not provide, linked as traps that name them
    /// (empty: it links fully). Whether it may run so is the module's `missing_imports`.
    pub missing_imports: Vec<String>,
    /// The engine the code belongs to (stores for it are made in this engine).
    pub(crate) engine: Engine,
    /// On baseline code: the optimization under way in the background.
    pub(crate) pending: Option<Pending>,
    /// The compiled code, shared with every other module loaded from the same component.
    _code: Arc<SharedCode>,
}

/// Compiled code in memory, shared by content digest.
pub(crate) struct SharedCode {
    component: Component,
    /// How it was made and how long that took.
    made_by: CodeSource,
    made_in: Duration,
    /// The cache's churn count, moved again when this code is dropped.
    churn: Arc<AtomicU64>,
}

impl SharedCode {
    /// Code just made; making it and dropping it are the code churn after which the node
    /// gives freed heap back ([`crate::heap`]).
    fn new(
        component: Component,
        made_by: CodeSource,
        made_in: Duration,
        churn: &Arc<AtomicU64>,
    ) -> SharedCode {
        churn.fetch_add(1, Ordering::Relaxed);
        SharedCode {
            component,
            made_by,
            made_in,
            churn: churn.clone(),
        }
    }
}

impl Drop for SharedCode {
    fn drop(&mut self) {
        self.churn.fetch_add(1, Ordering::Relaxed);
    }
}

/// Compiled components by digest, so identical components are compiled (or loaded from the
/// AOT cache) once however many modules use them, and kept in memory once while any of them
/// is loaded. Concurrent loads of one digest wait for the first instead of compiling again.
#[derive(Default)]
pub(crate) struct CodeCache {
    by_digest: Mutex<HashMap<String, Arc<Mutex<Weak<SharedCode>>>>>,
    /// Code made (compiled or loaded from the AOT cache), compiled and dropped: the churn
    /// after which the node gives freed heap back ([`crate::heap`]).
    churn: Arc<AtomicU64>,
}

impl CodeCache {
    /// The churn so far.
    pub(crate) fn churn(&self) -> u64 {
        self.churn.load(Ordering::Relaxed)
    }

    /// Counts a compile whose code may not be kept (its allocations are freed either way).
    pub(crate) fn note_compile(&self) {
        self.churn.fetch_add(1, Ordering::Relaxed);
    }

    /// The code for `digest`: shared if some module holds it, else made by `make` (only one
    /// caller per digest makes it; the others wait and share).
    pub(crate) fn get_or_make(
        &self,
        digest: &str,
        make: impl FnOnce() -> Result<(Component, CodeSource), LoadError>,
    ) -> Result<(Arc<SharedCode>, CodeSource), LoadError> {
        self.get_or_try(digest, || make().map(Some))
            .map(|made| made.expect("make always makes code"))
    }

    /// Code a module already holds for `digest`, or what `make` finds (it may find nothing:
    /// then nothing is cached and `None` returned).
    pub(crate) fn get_or_try(
        &self,
        digest: &str,
        make: impl FnOnce() -> Result<Option<(Component, CodeSource)>, LoadError>,
    ) -> Result<Option<(Arc<SharedCode>, CodeSource)>, LoadError> {
        let slot = self.slot(digest);
        let mut shared = slot.lock().expect("code slot lock");
        if let Some(code) = shared.upgrade() {
            return Ok(Some((code, CodeSource::Shared)));
        }
        let started = std::time::Instant::now();
        let Some((component, source)) = make()? else {
            return Ok(None);
        };
        let code = Arc::new(SharedCode::new(
            component,
            source,
            started.elapsed(),
            &self.churn,
        ));
        *shared = Arc::downgrade(&code);
        Ok(Some((code, source)))
    }

    /// Code made elsewhere (the background optimizer) for `digest`: kept as the shared code
    /// unless a module already holds code for it, which is returned instead.
    pub(crate) fn insert(
        &self,
        digest: &str,
        component: Component,
        made_in: Duration,
    ) -> Arc<SharedCode> {
        let slot = self.slot(digest);
        let mut shared = slot.lock().expect("code slot lock");
        if let Some(code) = shared.upgrade() {
            return code;
        }
        let code = Arc::new(SharedCode::new(
            component,
            CodeSource::Compiled,
            made_in,
            &self.churn,
        ));
        *shared = Arc::downgrade(&code);
        code
    }

    fn slot(&self, digest: &str) -> Arc<Mutex<Weak<SharedCode>>> {
        let mut map = self.by_digest.lock().expect("code cache lock");
        map.retain(|_, slot| {
            Arc::strong_count(slot) > 1 || slot.try_lock().is_ok_and(|w| w.strong_count() > 0)
        });
        map.entry(digest.to_owned()).or_default().clone()
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("digest", &self.digest)
            .field("world", &self.entry.world())
            .field("report", &self.report)
            .finish()
    }
}

/// Where prepared code comes from: the engine, the linker, the AOT cache and the node's
/// in-memory code shared by digest (one of each per tier).
#[derive(Clone, Copy)]
pub(crate) struct Code<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) linker: &'a Linker<Host>,
    /// Whether `linker` has `wasi:nn` (the node runs an inference host).
    pub(crate) nn: bool,
    pub(crate) cache: Option<&'a ArtifactCache>,
    pub(crate) shared: &'a CodeCache,
}

/// A component's bytes, read only when a load needs them (to compile): a load from the AOT
/// cache needs only the digest (of the bytes as given: what the AOT cache and the code shared
/// by digest are keyed on).
pub(crate) struct Wasm {
    /// The bytes as given, until [`Wasm::bytes`] has made them the bytes to compile.
    bytes: Option<Arc<[u8]>>,
    read: Option<ReadWasm>,
    /// The bytes to compile: checked, with WASI 0.3 release-candidate names renamed
    /// (`rc_names`).
    to_compile: Option<Arc<[u8]>>,
    len: u64,
}

/// Reads a component's bytes (from the node's store, which checks them against their digest),
/// as often as asked: a compile queued for later reads them when it starts, so the queue holds
/// no component's bytes.
pub type ReadWasm = Arc<dyn Fn() -> Result<Vec<u8>, spark_error::BoxError> + Send + Sync>;

impl Wasm {
    /// Bytes in memory (already checked to be a component's header).
    pub(crate) fn in_memory(bytes: Arc<[u8]>) -> Wasm {
        Wasm {
            len: bytes.len() as u64,
            bytes: Some(bytes),
            read: None,
            to_compile: None,
        }
    }

    /// `len` bytes that `read` reads when needed.
    pub(crate) fn stored(len: u64, read: ReadWasm) -> Wasm {
        Wasm {
            bytes: None,
            read: Some(read),
            to_compile: None,
            len,
        }
    }

    /// The size of the `.wasm`.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The same component for a later compile: a stored one read again then (through the same
    /// reader), one in memory sharing these bytes.
    pub(crate) fn again(&self) -> Wasm {
        match (&self.read, &self.bytes, &self.to_compile) {
            (Some(read), _, _) => Wasm::stored(self.len, read.clone()),
            (None, Some(bytes), _) | (None, None, Some(bytes)) => Wasm::in_memory(bytes.clone()),
            (None, None, None) => Wasm::stored(
                self.len,
                Arc::new(|| Err("the component's bytes are gone".into())),
            ),
        }
    }

    /// The bytes to compile (read now if they were not yet): checked to start as a component
    /// does, with WASI 0.3 release-candidate names renamed to the final ones.
    pub(crate) fn bytes(&mut self, path: &Path) -> Result<Arc<[u8]>, LoadError> {
        if let Some(bytes) = &self.to_compile {
            return Ok(bytes.clone());
        }
        let given = match (self.bytes.take(), &self.read) {
            (Some(bytes), _) => bytes,
            (None, Some(read)) => {
                let bytes: Arc<[u8]> =
                    Arc::from(read().map_err(|source| LoadError::Unavailable {
                        path: path.to_path_buf(),
                        source,
                    })?);
                self.len = bytes.len() as u64;
                bytes
            }
            (None, None) => {
                return Err(LoadError::Unavailable {
                    path: path.to_path_buf(),
                    source: "reading the component failed earlier in this load".into(),
                });
            }
        };
        check_header(path, &given)?;
        let renamed = crate::rc_names::rename(&given).map_err(|e| LoadError::Invalid {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        let bytes: Arc<[u8]> = renamed.map_or(given, Arc::from);
        self.to_compile = Some(bytes.clone());
        Ok(bytes)
    }
}

/// Blocking: compiles the component with `code`'s engine (or loads its AOT artifact) and links
/// it: the untiered path (Cranelift only, for `reason`). `started` is when the load began.
pub(crate) fn prepare_bytes(
    code: &Code<'_>,
    path: &Path,
    wasm: &mut Wasm,
    digest: &str,
    expect: Expect,
    started: Instant,
    reason: &str,
) -> Result<Arc<Prepared>, LoadError> {
    let (shared_code, source) = code.shared.get_or_make(digest, || {
        compile_or_load(code.engine, code.cache, path, wasm, digest)
    })?;
    let tier = TierStatus::cranelift_only(reason, started.elapsed());
    link(
        code,
        Linking {
            path,
            digest: digest.to_owned(),
            wasm_bytes: wasm.len(),
            expect,
            code_time: started.elapsed(),
        },
        shared_code,
        source,
        tier,
        None,
    )
}

/// What a load knows about the component being linked.
pub(crate) struct Linking<'a> {
    pub(crate) path: &'a Path,
    pub(crate) digest: String,
    pub(crate) wasm_bytes: u64,
    pub(crate) expect: Expect,
    /// Time to compile, or to read, authenticate and deserialize the artifact.
    pub(crate) code_time: Duration,
}

/// Blocking: checks the imports, pre-links the code and finds its world.
pub(crate) fn link(
    code: &Code<'_>,
    linking: Linking<'_>,
    shared_code: Arc<SharedCode>,
    source: CodeSource,
    tier: TierStatus,
    pending: Option<Pending>,
) -> Result<Arc<Prepared>, LoadError> {
    let Linking {
        path,
        digest,
        wasm_bytes,
        expect,
        code_time,
    } = linking;
    let engine = code.engine;
    let component = shared_code.component.clone();
    let started = Instant::now();
    if !code.nn {
        refuse_inference_imports(engine, &component, path)?;
    }
    let (pre, missing_imports) = crate::missing::instantiate_pre(engine, code.linker, &component)
        .map_err(|e| LoadError::Link {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    let entry = match classify(engine, &component, pre, path, expect) {
        Ok(entry) => entry,
        // A component that imports what the node lacks is told that first.
        Err(_) if !missing_imports.is_empty() => {
            return Err(LoadError::Link {
                path: path.to_path_buf(),
                source: crate::missing::refusal(&missing_imports).into(),
            });
        }
        Err(e) => return Err(e),
    };
    let report = LoadReport {
        source,
        wasm_bytes,
        code: code_time,
        link: started.elapsed(),
        made_by: shared_code.made_by,
        made_in: shared_code.made_in,
    };
    let imaging = Instant::now();
    if source != CodeSource::Shared
        && let Err(e) = component.initialize_copy_on_write_image()
    {
        tracing::debug!(error = %format!("{e:#}"), "no copy-on-write memory image");
    }
    tracing::debug!(
        path = %path.display(),
        link_ms = report.link.as_secs_f64() * 1e3,
        image_ms = imaging.elapsed().as_secs_f64() * 1e3,
        "code linked"
    );
    // The whole mapped artifact (native code, its metadata, data and memory images), not
    // only the text: what the process holds while the component is loaded, within ~0.2 MB of
    // anonymous memory per module.
    let image = component.image_range();
    let code_bytes = image.end.addr() - image.start.addr();
    Ok(Arc::new(Prepared {
        digest,
        entry,
        report,
        code_bytes,
        tier,
        missing_imports,
        engine: engine.clone(),
        pending,
        _code: shared_code,
    }))
}

/// On a node without an inference host (no `[nn]`), `wasi:nn` is not linked at all: a
/// component importing it is told so in those words, rather than by Wasmtime's "no matching
/// implementation" for the first such import.
fn refuse_inference_imports(
    engine: &Engine,
    component: &Component,
    path: &Path,
) -> Result<(), LoadError> {
    let wanted: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("wasi:nn/") || name.starts_with("spark:nn/"))
        .map(str::to_owned)
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    Err(LoadError::Link {
        path: path.to_path_buf(),
        source: format!(
            "it imports {} (inference), and this node runs no inference host: the node's \
             manifest needs an [nn] table",
            wanted.join(", ")
        )
        .into(),
    })
}

pub(crate) fn check_header(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm {
            path: path.to_path_buf(),
        });
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => Err(LoadError::CoreModule {
            path: path.to_path_buf(),
        }),
        [_, _, 1, 0] => Ok(()),
        _ => Err(LoadError::Invalid {
            path: path.to_path_buf(),
            source: format!(
                "unknown WebAssembly version/layer bytes {:02x?}",
                &bytes[4..8]
            )
            .into(),
        }),
    }
}

pub(crate) fn compile_or_load(
    engine: &Engine,
    cache: Option<&ArtifactCache>,
    path: &Path,
    wasm: &mut Wasm,
    digest: &str,
) -> Result<(Component, CodeSource), LoadError> {
    if let Some(component) = load_artifact(engine, cache, path, digest) {
        return Ok((component, CodeSource::AotCache));
    }
    let bytes = wasm.bytes(path)?;
    let component = Component::new(engine, &bytes).map_err(|e| LoadError::Invalid {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    store_artifact(cache, path, digest, &component);
    Ok((component, CodeSource::Compiled))
}

/// The AOT artifact of `digest` for `engine`, if the cache has one this node wrote.
pub(crate) fn load_artifact(
    engine: &Engine,
    cache: Option<&ArtifactCache>,
    path: &Path,
    digest: &str,
) -> Option<Component> {
    let cache = cache?;
    let checking = Instant::now();
    let verified = cache.get(digest)?;
    let checked = checking.elapsed();
    let loaded = match verified {
        // SAFETY: `ArtifactCache::get` returns only an artifact whose tag (a MAC under this
        // node's private key) verified: bytes this node produced with `Component::serialize`
        // for an engine with the same compatibility hash (part of the artifact's name) and for
        // this tier and component (both covered by the tag). `File` is the open file the tag
        // was checked through, owned by the node's user and writable by no one else: Wasmtime
        // maps that same file (`fd_path`, not the name, which may point elsewhere by now), and
        // only a party that could also read the key could change it (see `aot`'s docs).
        // Wasmtime ignores the trailer after its image and checks the artifact's header
        // against this engine.
        Verified::File(file) => unsafe {
            Component::deserialize_file(engine, Verified::fd_path(&file))
        },
        // SAFETY: as above, for bytes read into memory and checked there.
        Verified::Bytes(bytes) => unsafe { Component::deserialize(engine, &bytes) },
    };
    match loaded {
        Ok(component) => {
            tracing::debug!(
                path = %path.display(),
                check_ms = checked.as_secs_f64() * 1e3,
                deserialize_ms = (checking.elapsed() - checked).as_secs_f64() * 1e3,
                "AOT artifact loaded"
            );
            Some(component)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "AOT artifact rejected by the engine; recompiling");
            cache.remove(digest);
            None
        }
    }
}

/// Writes `component`'s artifact to the cache (a failure is logged: the next start compiles).
pub(crate) fn store_artifact(
    cache: Option<&ArtifactCache>,
    path: &Path,
    digest: &str,
    component: &Component,
) {
    let Some(cache) = cache else { return };
    match component.serialize() {
        Ok(artifact) => {
            if let Err(e) = cache.put(digest, &artifact) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write AOT artifact; the next start compiles again");
            }
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot serialize compiled component")
        }
    }
}

fn classify(
    engine: &Engine,
    component: &Component,
    pre: InstancePre<Host>,
    path: &Path,
    expect: Expect,
) -> Result<Entry, LoadError> {
    if let Ok(proxy) = ProxyPre::new(pre.clone()) {
        return Ok(Entry::Http(proxy));
    }
    if let Ok(service) = ServicePre::new(pre.clone()) {
        return Ok(Entry::HttpP3(service));
    }
    if expect == Expect::Job
        && let Ok(command) = CommandPre::new(pre)
    {
        return Ok(Entry::Command(command));
    }
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let wanted = match expect {
        Expect::Http => {
            "an HTTP module must export wasi:http/incoming-handler@0.2.x (the WASI 0.2 wasi:http/proxy world) or wasi:http/handler@0.3.x (the WASI 0.3 wasi:http/service world)"
        }
        Expect::Job => {
            "a job must export wasi:cli/run@0.2.x (a command), wasi:http/incoming-handler@0.2.x or wasi:http/handler@0.3.x"
        }
    };
    Err(LoadError::WrongWorld {
        path: path.to_path_buf(),
        reason: format!("{wanted}; it exports [{}]", exports.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// An empty component: its preamble alone.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn a_stored_component_is_read_again_by_a_later_compile_not_held_for_it() {
        let reads = Arc::new(AtomicUsize::new(0));
        let counted = reads.clone();
        let mut now = Wasm::stored(
            8,
            Arc::new(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(EMPTY_COMPONENT.to_vec())
            }),
        );
        let mut later = now.again();
        assert_eq!(reads.load(Ordering::SeqCst), 0, "queued without reading");
        assert_eq!(&*now.bytes(Path::new("m")).unwrap(), EMPTY_COMPONENT);
        let mut after_a_read = now.again();
        assert_eq!(&*later.bytes(Path::new("m")).unwrap(), EMPTY_COMPONENT);
        assert_eq!(
            &*after_a_read.bytes(Path::new("m")).unwrap(),
            EMPTY_COMPONENT
        );
        assert_eq!(
            reads.load(Ordering::SeqCst),
            3,
            "each read when it compiles"
        );
    }

    #[test]
    fn a_component_in_memory_shares_its_bytes_with_a_later_compile() {
        let bytes: Arc<[u8]> = Arc::from(EMPTY_COMPONENT);
        let mut now = Wasm::in_memory(bytes.clone());
        let compiled = now.bytes(Path::new("m")).unwrap();
        let mut later = now.again();
        assert!(Arc::ptr_eq(
            &later.bytes(Path::new("m")).unwrap(),
            &compiled
        ));
        assert!(
            Arc::ptr_eq(&compiled, &bytes),
            "nothing to rename: the same bytes"
        );
    }
}
