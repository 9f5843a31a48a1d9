//! spark-fleet against a real nats-server (JetStream on 127.0.0.1, started per test), or a
//! real cluster of three (`cluster`).

mod artifacts;
mod cluster;
mod desired;
mod heartbeats;
mod watch;

use std::collections::BTreeMap;
use std::time::Duration;

use spark_fleet::plan::{self, CanarySpec};
use spark_fleet::{DesiredApp, Fleet, FleetConfig, FleetRelease};
use spark_testkit::NatsServer;

async fn connect(server: &NatsServer) -> Fleet {
    let mut config = FleetConfig::new(server.url());
    config.heartbeat_ttl = Duration::from_secs(2);
    Fleet::connect(&config)
        .await
        .expect("connecting to nats-server")
}

fn desired(app: &str, generation: u64, text: &str) -> DesiredApp {
    let release = FleetRelease {
        manifest: text.into(),
        components: BTreeMap::from([("m".into(), "00".repeat(32))]),
        note: String::new(),
        signature: None,
    };
    let rollout = plan::start(&release.key(), &CanarySpec::default(), &[]).unwrap();
    DesiredApp {
        app: app.into(),
        generation,
        release,
        previous: None,
        rollout,
        updated_by: "test".into(),
        intent: None,
    }
}
