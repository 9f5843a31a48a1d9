//! The node's two doors: the public listener (applications) and the admin listener, each
//! bound, with its TLS if configured, and served under its own limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use http_body_util::BodyExt;
use spark_manifest::{CertificateFiles, NodeSettings};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use super::NodeError;
use super::sizing::Sizing;
use crate::serve::critical_home::CriticalHome;
use crate::serve::front::{BoxError, Front};
use crate::serve::listener::{self, Handler, ListenerConfig, ListenerStats};
use crate::serve::tls::{RELOAD_EVERY, TlsTerminator};

/// One bound listener and its TLS.
pub(super) struct Door {
    listener: TcpListener,
    pub(super) addr: SocketAddr,
    tls: Option<Arc<TlsTerminator>>,
}

impl Door {
    /// Binds `addr` and loads its certificates (none: plain HTTP).
    pub(super) async fn open(
        addr: SocketAddr,
        certificates: &[CertificateFiles],
        name: &'static str,
    ) -> Result<Door, NodeError> {
        let tls = match certificates {
            [] => None,
            files => Some(TlsTerminator::load(files).map_err(|source| NodeError::Tls {
                listener: name,
                source: Box::new(source),
            })?),
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| NodeError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| NodeError::Bind { addr, source })?;
        Ok(Door {
            listener,
            addr,
            tls,
        })
    }

    pub(super) fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Serves the door until `shutdown`; the certificates are watched for changes.
    pub(super) fn serve(
        self,
        handler: Handler,
        config: DoorConfig,
        stats: Arc<ListenerStats>,
        shutdown: CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(tls) = &self.tls {
            tasks.push(tokio::spawn(
                tls.clone().watch(RELOAD_EVERY, shutdown.clone()),
            ));
        }
        let config = ListenerConfig {
            limits: config.limits,
            tls: self.tls,
            memory_budget: config.memory_budget,
            grace: config.grace,
            critical_home: config.critical_home,
        };
        tasks.push(tokio::spawn(listener::serve(
            self.listener,
            handler,
            config,
            stats,
            shutdown,
        )));
        tasks
    }
}

/// A door's limits and budget.
pub(super) struct DoorConfig {
    pub(super) limits: spark_manifest::ListenerLimits,
    pub(super) memory_budget: u64,
    pub(super) grace: Duration,
    /// Where its critical connections are served apart (the public door's, with
    /// `orchestrator.critical_first`).
    pub(super) critical_home: Option<CriticalHome>,
}

impl DoorConfig {
    pub(super) fn public(
        sizing: &Sizing,
        node: &NodeSettings,
        critical_home: Option<CriticalHome>,
    ) -> DoorConfig {
        DoorConfig {
            limits: sizing.public,
            memory_budget: sizing.connection_memory,
            grace: node.shutdown_grace,
            critical_home,
        }
    }

    pub(super) fn admin(sizing: &Sizing, node: &NodeSettings) -> DoorConfig {
        DoorConfig {
            limits: sizing.admin,
            memory_budget: sizing.admin_connection_memory,
            grace: node.shutdown_grace,
            critical_home: None,
        }
    }
}

/// The applications' handler.
pub(super) fn front_handler(front: Arc<Front>) -> Handler {
    Arc::new(move |request| front.clone().handle(request).boxed())
}

/// The admin API's handler (an axum router).
pub(super) fn admin_handler(router: axum::Router) -> Handler {
    Arc::new(move |request| {
        let mut router = router.clone();
        async move {
            let response = match router.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            response.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync())
        }
        .boxed()
    })
}
