//! TLS termination with rustls: each listener's certificates (PEM chain and key files), the
//! one to present chosen by the name the client asks for (SNI), ALPN `h2` and `http/1.1`,
//! and the files re-read when they change, without a restart.
//!
//! The names a certificate serves are the certificate's own (checked with webpki against the
//! requested name, as a client would); a client that sends no name, or one no certificate
//! covers, gets the first certificate. A reload that fails (a half-written file, a key that
//! does not match) keeps the certificates in use and says why: a renewal script racing the
//! node never takes TLS down.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use spark_manifest::CertificateFiles;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// How often certificate files are checked for changes.
pub(crate) const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificates configured")]
    Empty,
    #[error("{}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a PEM certificate chain", path.display())]
    Certificate {
        path: PathBuf,
        #[source]
        source: PemProblem,
    },
    #[error("{}: not a PEM private key", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: PemProblem,
    },
    #[error("{} and {}", cert.display(), key.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS configuration")]
    Config(#[source] rustls::Error),
}

/// What is wrong with a PEM file: the parser's error, or no section of the kind wanted.
#[derive(Debug, thiserror::Error)]
pub enum PemProblem {
    #[error(transparent)]
    Parse(#[from] rustls::pki_types::pem::Error),
    #[error("no CERTIFICATE section found")]
    NoCertificate,
}

/// A listener's TLS: the acceptor and the certificates behind it.
pub(crate) struct TlsTerminator {
    acceptor: TlsAcceptor,
    certificates: Arc<Certificates>,
}

impl std::fmt::Debug for TlsTerminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTerminator")
            .field("files", &self.certificates.files)
            .finish()
    }
}

impl TlsTerminator {
    /// Loads every certificate chain and key; errors name the file.
    pub(crate) fn load(files: &[CertificateFiles]) -> Result<Arc<TlsTerminator>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = load_all(files, &provider)?;
        let certificates = Arc::new(Certificates {
            files: files.to_vec(),
            stamps: Mutex::new(stamps(files)),
            loaded: ArcSwap::from_pointee(loaded),
            provider: provider.clone(),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(certificates.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(TlsTerminator {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificates,
        }))
    }

    /// Runs the handshake; returns the stream and whether the client chose HTTP/2.
    pub(crate) async fn accept<IO>(&self, tcp: IO) -> io::Result<(TlsStream<IO>, bool)>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let stream = self.acceptor.accept(tcp).await?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((stream, h2))
    }

    /// Re-reads the files if any changed since the last load. On failure the certificates in
    /// use stay. Returns whether new certificates were loaded.
    pub(crate) fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let certs = &self.certificates;
        let now = stamps(&certs.files);
        let mut seen = certs.stamps.lock().expect("stamps lock");
        if *seen == now {
            return Ok(false);
        }
        // Remember what we saw either way: a broken file is reported once, not every tick.
        *seen = now;
        let loaded = load_all(&certs.files, &certs.provider)?;
        certs.loaded.store(Arc::new(loaded));
        Ok(true)
    }

    /// Checks for changed files every `every` until `shutdown`.
    pub(crate) async fn watch(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return,
            }
            let tls = self.clone();
            let reloaded = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
            match reloaded {
                Ok(Ok(true)) => tracing::info!(
                    files = self.certificates.files.len(),
                    "TLS certificates reloaded"
                ),
                Ok(Ok(false)) => {}
                Ok(Err(error)) => {
                    tracing::error!(error = %spark_error::chain(&error), "TLS certificates changed but cannot be loaded; keeping the ones in use")
                }
                Err(error) => {
                    tracing::error!(error = %spark_error::chain(&error), "TLS reload task failed")
                }
            }
        }
    }
}

/// The certificates of one listener, swapped whole on reload.
#[derive(Debug)]
struct Certificates {
    files: Vec<CertificateFiles>,
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
    loaded: ArcSwap<Vec<Loaded>>,
    provider: Arc<CryptoProvider>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
}

impl Loaded {
    fn serves(&self, name: &ServerName<'_>) -> bool {
        let Some(leaf) = self.key.cert.first() else {
            return false;
        };
        webpki::EndEntityCert::try_from(leaf)
            .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(name).is_ok())
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.loaded.load();
        let wanted = hello
            .server_name()
            .and_then(|name| ServerName::try_from(name).ok());
        let chosen = wanted
            .and_then(|name| loaded.iter().find(|c| c.serves(&name)))
            .or_else(|| loaded.first());
        chosen.map(|c| c.key.clone())
    }
}

/// Modification time and size of each file (`None`: unreadable), to notice changes.
fn stamps(files: &[CertificateFiles]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .flat_map(|f| [&f.cert, &f.key])
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

fn load_all(
    files: &[CertificateFiles],
    provider: &CryptoProvider,
) -> Result<Vec<Loaded>, TlsError> {
    if files.is_empty() {
        return Err(TlsError::Empty);
    }
    files.iter().map(|f| load_one(f, provider)).collect()
}

fn load_one(files: &CertificateFiles, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
    let chain = read(&files.cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Certificate {
            path: files.cert.clone(),
            source: e.into(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            path: files.cert.clone(),
            source: PemProblem::NoCertificate,
        });
    }
    let key = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        source: e.into(),
    })?;
    let key =
        CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    Ok(Loaded { key: Arc::new(key) })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}
