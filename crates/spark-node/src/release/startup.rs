//! Which release a starting node serves.
//!
//! The store decides, so a restarted node resumes exactly where it was: its current release,
//! and a rollout in progress at the step it had reached. The manifest file given to `spark up`
//! is imported into the store on every start (components as content-addressed artifacts); if
//! it differs from the file of the last start (it was edited), it becomes a new release and
//! the current one, unless a rollout is in progress, which always wins.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use spark_manifest::{ComponentRef, Manifest, ManifestError, ModuleSpec};
use spark_rollout::Rollout;
use spark_store::{
    Digest, FileStamp, NewEvent, NewRelease, Release, ReleaseId, ReleaseModule, RolloutChange,
    SourceRecord, Store, StoreError, Transition,
};

/// Why the node's store could not give the release to serve (the node does not start; see
/// [`crate::NodeError::Store`] and [`crate::NodeError::Release`]).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("module '{module}': cannot read {}", path.display())]
    Read {
        module: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("module '{module}': artifact sha256:{digest} is not in the store")]
    MissingArtifact { module: String, digest: String },
    #[error("current release {id} is missing from the store")]
    MissingRelease { id: String },
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// The blocking task doing this panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// Why a stored release cannot be served as it is.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Its manifest no longer validates (the diagnostics say where).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("release {release} has no artifact for module '{module}'")]
    NoArtifact { release: String, module: String },
}

/// A module of a release with its artifact digest.
pub(crate) type ReleaseModules = Vec<(ModuleSpec, String)>;

/// A rollout found in the store: its state, the canary release and that release's modules.
pub(crate) type ResumedRollout = (Rollout, Release, ReleaseModules);

/// What the node starts serving.
pub(crate) struct StartupPlan {
    /// The stable release and its modules.
    pub current: Release,
    pub modules: ReleaseModules,
    /// A rollout to resume, with the canary release's modules.
    pub rollout: Option<ResumedRollout>,
}

/// The modules of a release: its manifest's specs, each pointed at the release's artifact.
pub(crate) fn release_modules(
    release: &Release,
) -> Result<Vec<(ModuleSpec, String)>, ReleaseError> {
    let name = format!("release {}", release.id.as_str());
    let manifest = Manifest::parse(&release.manifest, Path::new(&name))?;
    manifest
        .modules
        .into_iter()
        .map(|mut spec| {
            let module =
                release
                    .module(spec.id.as_str())
                    .ok_or_else(|| ReleaseError::NoArtifact {
                        release: release.id.as_str().to_owned(),
                        module: spec.id.to_string(),
                    })?;
            spec.component = ComponentRef::Artifact(module.digest.as_str().to_owned());
            Ok((spec, module.digest.as_str().to_owned()))
        })
        .collect()
}

/// Threads importing components at once: hashing is CPU, but most of an import's time is
/// waiting for the disk to sync each new artifact, and syncs of many files overlap.
const IMPORT_THREADS: usize = 8;

/// One module's component, imported.
struct Imported {
    spec: ModuleSpec,
    digest: String,
    /// The file's new source record, if it was hashed and may be trusted next time.
    record: Option<(String, SourceRecord)>,
    /// Whether the file was read and hashed (false: its record vouched for it).
    hashed: bool,
}

/// Puts the manifest's component files into the store; returns each module with its digest
/// (in the manifest's order; the first failure in that order if any fails).
///
/// A file whose source record still vouches for it (the same `stat` stamp as when it was
/// hashed, its stored copy present: [`SourceRecord::trusted`]) is neither read nor hashed;
/// the others are read, hashed and stored, and their new records written in one
/// transaction. So a restart on unchanged files costs one `stat` per component and the
/// store check of its copy, not two reads and two hashes.
pub(crate) fn import(
    store: &Store,
    manifest: &Manifest,
) -> Result<Vec<(ModuleSpec, String)>, StartupError> {
    let known = store.source_records().unwrap_or_else(|e| {
        tracing::warn!(error = %spark_error::chain(&e), "source records unreadable; hashing every component");
        Default::default()
    });
    let specs = &manifest.modules;
    let chunk = specs.len().div_ceil(IMPORT_THREADS).max(1);
    let known = &known;
    let chunks: Vec<Vec<Result<Imported, StartupError>>> = std::thread::scope(|s| {
        let workers: Vec<_> = specs
            .chunks(chunk)
            .map(|specs| {
                s.spawn(move || {
                    specs
                        .iter()
                        .map(|spec| import_one(store, known, spec))
                        .collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("an import thread panicked"))
            .collect()
    });
    let imported: Vec<Imported> = chunks.into_iter().flatten().collect::<Result<_, _>>()?;
    let hashed = imported.iter().filter(|i| i.hashed).count();
    let records: Vec<(String, SourceRecord)> =
        imported.iter().filter_map(|i| i.record.clone()).collect();
    let named: std::collections::HashSet<String> = specs
        .iter()
        .filter_map(|spec| match &spec.component {
            ComponentRef::File(path) => source_key(path),
            ComponentRef::Artifact(_) => None,
        })
        .collect();
    let stale = known.keys().any(|path| !named.contains(path));
    if !records.is_empty() || stale {
        // Only an optimisation: without the records the next start hashes again.
        if let Err(e) = store.update_source_records(&records, &named) {
            tracing::warn!(error = %spark_error::chain(&e), "could not record component stamps; the next start hashes them again");
        }
    }
    tracing::info!(
        components = imported.len(),
        hashed,
        recorded = records.len(),
        "components imported (unchanged files are not read again)"
    );
    Ok(imported.into_iter().map(|i| (i.spec, i.digest)).collect())
}

/// The key of a component file's source record: its absolute path, if it is UTF-8 (a file
/// without one is hashed on every start).
fn source_key(path: &Path) -> Option<String> {
    std::path::absolute(path)
        .ok()
        .and_then(|p| p.to_str().map(str::to_owned))
}

fn import_one(
    store: &Store,
    known: &HashMap<String, SourceRecord>,
    spec: &ModuleSpec,
) -> Result<Imported, StartupError> {
    let (digest, record, hashed) = match &spec.component {
        ComponentRef::File(path) => {
            let read_error = |source| StartupError::Read {
                module: spec.id.to_string(),
                path: path.clone(),
                source,
            };
            let key = source_key(path);
            let stamp = FileStamp::of(&std::fs::metadata(path).map_err(read_error)?);
            let trusted = key
                .as_ref()
                .and_then(|key| known.get(key))
                .zip(stamp)
                .and_then(|(record, now)| {
                    let stored = std::fs::metadata(store.artifacts().path(&record.digest))
                        .ok()
                        .filter(|m| m.is_file())
                        .map(|m| m.len());
                    record.trusted(&now, stored).cloned()
                });
            match trusted {
                Some(digest) => (digest.as_str().to_owned(), None, false),
                None => {
                    let (digest, record) = hash_file(store, path).map_err(|e| match e {
                        HashError::Read(source) => read_error(source),
                        HashError::Store(e) => StartupError::Store(e),
                    })?;
                    let record = key.zip(record);
                    (digest.as_str().to_owned(), record, true)
                }
            }
        }
        ComponentRef::Artifact(digest) => {
            let parsed = Digest::parse(digest)?;
            if !store.artifacts().contains(&parsed) {
                return Err(StartupError::MissingArtifact {
                    module: spec.id.to_string(),
                    digest: digest.clone(),
                });
            }
            (digest.clone(), None, false)
        }
    };
    let mut spec = spec.clone();
    spec.component = ComponentRef::Artifact(digest.clone());
    Ok(Imported {
        spec,
        digest,
        record,
        hashed,
    })
}

enum HashError {
    Read(std::io::Error),
    Store(StoreError),
}

/// Reads, hashes and stores a component file; its digest, and its source record if the file
/// held still while it was read and was not modified just before ([`SourceRecord::observed`]).
fn hash_file(store: &Store, path: &Path) -> Result<(Digest, Option<SourceRecord>), HashError> {
    use std::io::Read;
    let read_started = std::time::SystemTime::now();
    let mut file = std::fs::File::open(path).map_err(HashError::Read)?;
    let before = file.metadata().map_err(HashError::Read)?;
    let mut bytes = Vec::with_capacity(before.len() as usize);
    file.read_to_end(&mut bytes).map_err(HashError::Read)?;
    let after = file.metadata().map_err(HashError::Read)?;
    let digest = store.artifacts().put(&bytes).map_err(HashError::Store)?;
    let record = FileStamp::of(&before)
        .zip(FileStamp::of(&after))
        .and_then(|(before, after)| {
            SourceRecord::observed(before, after, read_started, digest.clone())
        });
    Ok((digest, record))
}

/// The release modules of `(spec, digest)` pairs.
pub(crate) fn release_entries(
    modules: &[(ModuleSpec, String)],
) -> Result<Vec<ReleaseModule>, StoreError> {
    modules
        .iter()
        .map(|(spec, digest)| {
            Ok(ReleaseModule {
                id: spec.id.to_string(),
                digest: Digest::parse(digest)?,
            })
        })
        .collect()
}

/// The content part of the id a release of this manifest and these modules would get.
pub(crate) fn content_hash(manifest: &str, modules: &[ReleaseModule]) -> String {
    let mut sorted = modules.to_vec();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    Digest::of(spark_store::canonical_json(manifest, &sorted).as_bytes())
        .short(12)
        .to_owned()
}

/// Decides what to serve (blocking: runs on a blocking thread).
///
/// The file takes over only when it is new to the store: the first start, or a file edited
/// since the last start. A restart with the file as it was keeps whatever was deployed since
/// (through the API or a rollout), so a supervisor restarting `spark up spark.toml` never
/// undoes a deploy. `now_ms` (the node's clock) stamps a release made from the file.
pub(crate) fn plan(
    store: &Arc<Store>,
    manifest: &Manifest,
    now_ms: u64,
) -> Result<StartupPlan, StartupError> {
    let imported = import(store, manifest)?;
    let entries = release_entries(&imported)?;
    let fingerprint = content_hash(&manifest.text, &entries);
    let file_is_new = store.started_from()?.as_deref() != Some(fingerprint.as_str());
    let state = store.state()?;
    let resumed = match (&state.current, &state.rollout) {
        (Some(_), Some(bytes)) => resume(store, bytes)?,
        _ => None,
    };
    let current = match state.current {
        Some(id) if resumed.is_some() => {
            if file_is_new {
                tracing::warn!(
                    "the manifest file changed, but a rollout is in progress: it wins; restart once it is done"
                );
            }
            return finish(load(store, &id)?, resumed);
        }
        Some(id) if !file_is_new || id.content_hash() == fingerprint => load(store, &id)?,
        Some(id) => {
            tracing::info!(previous = %id.as_str(), "the manifest file changed since the last start; it becomes the current release");
            let why = "manifest file changed at startup";
            bootstrap(store, manifest, entries, why, now_ms)?
        }
        None => bootstrap(store, manifest, entries, "first start", now_ms)?,
    };
    if file_is_new {
        store.set_started_from(&fingerprint)?;
    }
    finish(current, None)
}

fn finish(current: Release, rollout: Option<ResumedRollout>) -> Result<StartupPlan, StartupError> {
    let modules = release_modules(&current)?;
    Ok(StartupPlan {
        current,
        modules,
        rollout,
    })
}

fn load(store: &Store, id: &ReleaseId) -> Result<Release, StartupError> {
    store
        .release(id)?
        .ok_or_else(|| StartupError::MissingRelease {
            id: id.as_str().to_owned(),
        })
}

fn bootstrap(
    store: &Store,
    manifest: &Manifest,
    entries: Vec<ReleaseModule>,
    why: &str,
    now_ms: u64,
) -> Result<Release, StartupError> {
    let note = format!("{why}: {}", manifest.source.display());
    let release = store.create_release(NewRelease {
        manifest: manifest.text.clone(),
        modules: entries,
        author_note: note.clone(),
        created_ms: now_ms,
    })?;
    let transition = Transition {
        current: Some(release.id.clone()),
        rollout: RolloutChange::Keep,
    };
    let event = NewEvent {
        kind: "release",
        release: Some(&release.id),
        detail: &note,
        at_ms: now_ms,
    };
    store.commit_with_event(transition, event)?;
    Ok(release)
}

/// A stored rollout still running, with its canary release; a finished or unreadable one is
/// cleared (the current release stands).
fn resume(store: &Store, bytes: &[u8]) -> Result<Option<ResumedRollout>, StartupError> {
    let rollout: Rollout = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %spark_error::chain(&e), "stored rollout unreadable; serving the current release");
            store.clear_rollout()?;
            return Ok(None);
        }
    };
    if !rollout.running() {
        store.clear_rollout()?;
        return Ok(None);
    }
    let id = ReleaseId::parse(&rollout.to)?;
    let canary = load(store, &id)?;
    let modules = release_modules(&canary)?;
    tracing::info!(release = %rollout.to, "resuming the rollout in progress");
    Ok(Some((rollout, canary, modules)))
}
