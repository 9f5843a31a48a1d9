//! `spark events`: the node's release and rollout history (deploys, switches, canary steps
//! with their verdicts, promotions, aborts, rollbacks), oldest first so it reads as a story.

use anyhow::Context;
use spark_api::EventView;

use super::client::AdminArgs;

#[derive(Debug, clap::Args)]
pub(crate) struct EventsArgs {
    /// How many of the newest events to show (the node lists at most 1000).
    #[arg(long, default_value_t = spark_api::DEFAULT_EVENTS)]
    limit: usize,
    /// Only events of this kind (e.g. `rollout`, `promoted`, `switch`).
    #[arg(long)]
    kind: Option<String>,
    /// Only events about this release (its id, e.g. `r3-...`, or its number, e.g. `r3`).
    #[arg(long)]
    release: Option<String>,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(super) async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let path = format!("/v1/events?limit={}", args.limit);
    let body = args.admin.client()?.get(&path).await?;
    let mut events: Vec<EventView> =
        serde_json::from_slice(&body).context("reading the event log")?;
    events.retain(|e| wanted(e, args.kind.as_deref(), args.release.as_deref()));
    events.reverse();
    println!(
        "{:<20} {:<10} {:<20} DETAIL",
        "TIME (UTC)", "KIND", "RELEASE"
    );
    for e in &events {
        println!(
            "{:<20} {:<10} {:<20} {}",
            utc(e.at_ms),
            e.kind,
            e.release.as_deref().unwrap_or("-"),
            e.detail
        );
    }
    if events.is_empty() {
        println!("(no events)");
    }
    Ok(())
}

/// Whether `event` passes the filters: the kind exactly; the release by id or by its
/// `r<number>` prefix.
fn wanted(event: &EventView, kind: Option<&str>, release: Option<&str>) -> bool {
    let kind_ok = kind.is_none_or(|k| event.kind == k);
    let release_ok = release.is_none_or(|r| {
        event
            .release
            .as_deref()
            .is_some_and(|id| id == r || id.strip_prefix(r).is_some_and(|s| s.starts_with('-')))
    });
    kind_ok && release_ok
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` in UTC (the proleptic Gregorian calendar,
/// from the day count; no time-zone database needed).
pub(super) fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm, in unsigned form).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_milliseconds_read_as_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_796_299_199_999), "2026-12-03 11:59:59");
        assert_eq!(utc(4_107_542_400_000), "2100-03-01 00:00:00");
    }

    #[test]
    fn filters_by_kind_and_release_id_or_number() {
        let event = EventView {
            at_ms: 0,
            kind: "promoted".into(),
            release: Some("r12-abcdef012345".into()),
            detail: String::new(),
        };
        assert!(wanted(&event, None, None));
        assert!(wanted(&event, Some("promoted"), Some("r12")));
        assert!(wanted(&event, None, Some("r12-abcdef012345")));
        assert!(!wanted(&event, None, Some("r1")), "r1 is not r12");
        assert!(!wanted(&event, Some("switch"), None));
    }
}
