//! Battery probe: `/sys/class/power_supply/*` reduced to one [`PowerSource`].
//!
//! The decision worth knowing: absence is an answer, not a fault. A node with no
//! `power_supply` directory, or none of type `Battery` (servers, containers), runs on mains.
//! System batteries (not `scope` `Device`, such as a wireless mouse's) are averaged with equal
//! weight: `energy_full` is not exposed by every driver, so capacity percent is the one number
//! all batteries share.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::health::{Fault, HealthLog, ProbeHealth};
use super::source::{Garbled, Reader, parse_number, read_text};

/// Where the node's power comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerSource {
    /// External power and no battery, or no battery the probe could read.
    #[default]
    Mains,
    /// A battery: mean capacity of the system batteries, and whether external power is
    /// connected (an adapter reports `online`, or a battery reports `Charging`).
    Battery {
        /// Mean capacity of the system batteries, 0..=100 percent.
        percent: f64,
        /// External power is connected.
        charging: bool,
    },
}

/// What the battery probe saw in one sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Power {
    /// Mains or battery.
    pub source: PowerSource,
    /// How the battery probe fared.
    pub health: ProbeHealth,
}

/// Reads `<root>/sys/class/power_supply`.
#[derive(Debug)]
pub struct BatteryProbe {
    dir: PathBuf,
    log: HealthLog,
}

/// What the supplies of one sample add up to.
#[derive(Debug, Default)]
struct Supplies {
    capacities: Vec<f64>,
    external: bool,
}

impl BatteryProbe {
    /// A probe of the supplies under `root` ("/" in production).
    pub fn new(root: &Path) -> BatteryProbe {
        BatteryProbe {
            dir: root.join("sys/class/power_supply"),
            log: HealthLog::new("battery"),
        }
    }

    /// Reads every supply once; never fails (unreadable sources degrade `health`).
    pub fn sample(&mut self) -> Power {
        let mut reader = Reader::default();
        let mut supplies = Supplies::default();
        let (entries, listing_fault) = list(&self.dir);
        for entry in entries {
            read_supply(&entry, &mut reader, &mut supplies);
        }
        let mut faults = reader.into_faults();
        faults.extend(listing_fault);
        let source = match supplies.capacities.len() {
            0 => PowerSource::Mains,
            n => PowerSource::Battery {
                percent: supplies.capacities.iter().sum::<f64>() / n as f64,
                charging: supplies.external,
            },
        };
        Power {
            source,
            health: self.log.update(&faults),
        }
    }
}

/// The supply directories, sorted by name; a missing directory is no supplies at all.
fn list(dir: &Path) -> (Vec<PathBuf>, Option<Fault>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Vec::new(), None),
        Err(e) => {
            return (
                Vec::new(),
                Some(Fault::new(dir.display().to_string(), e.to_string())),
            );
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    (paths, None)
}

fn read_supply(dir: &Path, reader: &mut Reader, supplies: &mut Supplies) {
    let Some(kind) = reader.optional(&dir.join("type"), |t| Ok(t.trim().to_string())) else {
        return;
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let adapter = name.starts_with("ADP") || name.starts_with("AC");
    match kind.as_str() {
        "Battery" if is_system_battery(dir) => {
            if let Some(percent) = capacity(dir, reader) {
                supplies.capacities.push(percent);
            }
            let status = reader.optional(&dir.join("status"), |t| Ok(t.trim().to_string()));
            supplies.external |= status.as_deref() == Some("Charging");
        }
        "Battery" => {}
        "Mains" | "USB" | "Wireless" => supplies.external |= online(dir, reader),
        _ if adapter => supplies.external |= online(dir, reader),
        _ => {}
    }
}

/// A battery that powers the system, present in its bay (not a peripheral's battery).
fn is_system_battery(dir: &Path) -> bool {
    let word = |file: &str| {
        read_text(&dir.join(file))
            .ok()
            .map(|t| t.trim().to_string())
    };
    word("scope").as_deref() != Some("Device") && word("present").as_deref() != Some("0")
}

fn online(dir: &Path, reader: &mut Reader) -> bool {
    reader
        .optional(&dir.join("online"), parse_number::<u8>)
        .is_some_and(|o| o != 0)
}

/// `capacity` (percent), or for drivers without it `energy_now / energy_full` or
/// `charge_now / charge_full`.
fn capacity(dir: &Path, reader: &mut Reader) -> Option<f64> {
    let path = dir.join("capacity");
    if path.exists() {
        return reader.optional(&path, parse_percent);
    }
    let fallback = ratio(dir, "energy").or_else(|| ratio(dir, "charge"));
    fallback.or_else(|| reader.fail(&path, "missing, and no energy_* or charge_* pair".into()))
}

fn ratio(dir: &Path, prefix: &str) -> Option<f64> {
    let read = |suffix: &str| {
        let text = read_text(&dir.join(format!("{prefix}_{suffix}"))).ok()?;
        parse_number::<u64>(&text).ok()
    };
    let (now, full) = (read("now")?, read("full").filter(|&f| f > 0)?);
    Some((now as f64 * 100.0 / full as f64).min(100.0))
}

fn parse_percent(text: &str) -> Result<f64, Garbled> {
    let value: u8 = parse_number(text)?;
    if value > 100 {
        return Err(Garbled::OverHundred { value });
    }
    Ok(f64::from(value))
}
