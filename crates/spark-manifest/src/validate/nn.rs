//! Validation of the `[nn]` table.

use toml::Spanned;

use super::Validator;
use crate::nn::{NN_BACKENDS, NnModel, NnSelection, NnSettings};
use crate::schema::{RawNn, RawNnModel};

const MAX_CPU_THREADS: i64 = 256;

impl Validator<'_> {
    pub(super) fn nn(&mut self, raw: Option<&RawNn>) -> Option<NnSettings> {
        let raw = raw?;
        let d = NnSettings::default();
        let mut backends = match &raw.backends {
            None => d.backends.clone(),
            Some(list) => self.backends(list),
        };
        if !backends.iter().any(|b| b == "tract") {
            backends.push("tract".into());
        }
        let rediscover = self.duration(raw.rediscover.as_ref(), d.rediscover, "nn.rediscover");
        if let Some(span) = raw.rediscover.as_ref().map(Spanned::span)
            && !rediscover.is_zero()
            && rediscover < std::time::Duration::from_secs(1)
        {
            self.error(span, "nn.rediscover must be at least 1s (or \"0s\": off)");
        }
        Some(NnSettings {
            backends,
            ort_library: raw
                .ort_library
                .as_ref()
                .map(|p| self.base.join(p.get_ref())),
            allow_software_adapters: raw
                .allow_software_adapters
                .unwrap_or(d.allow_software_adapters),
            device_root: raw
                .device_root
                .as_ref()
                .map_or(d.device_root.clone(), |r| self.base.join(r.get_ref())),
            cpu_threads: self.int(
                raw.cpu_threads.as_ref(),
                1,
                1..=MAX_CPU_THREADS,
                "nn.cpu_threads",
            ) as u32,
            rediscover,
            power_save_cpu_only: raw.power_save_cpu_only.unwrap_or(d.power_save_cpu_only),
            saturation: self.int(raw.saturation.as_ref(), 0, 0..=100_000, "nn.saturation") as u32,
            selection: self.selection(raw.selection.as_ref()),
            reprobe: self.duration(raw.reprobe.as_ref(), d.reprobe, "nn.reprobe"),
            models: self.models(&raw.models),
        })
    }

    fn selection(&mut self, raw: Option<&Spanned<String>>) -> NnSelection {
        match raw.map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("measured", _)) => NnSelection::Measured,
            Some(("chain", _)) => NnSelection::Chain,
            Some((other, span)) => {
                self.error(
                    span,
                    format!("nn.selection: {other:?} is not \"measured\" or \"chain\""),
                );
                NnSelection::Measured
            }
        }
    }

    fn backends(&mut self, list: &Spanned<Vec<Spanned<String>>>) -> Vec<String> {
        let mut out = Vec::new();
        for name in list.get_ref() {
            let text = name.get_ref();
            if !NN_BACKENDS.contains(&text.as_str()) {
                self.error(
                    name.span(),
                    format!(
                        "nn.backends: unknown backend {text:?} (known: {})",
                        NN_BACKENDS.join(", ")
                    ),
                );
            } else if out.contains(text) {
                self.error(name.span(), format!("nn.backends: {text:?} given twice"));
            } else {
                out.push(text.clone());
            }
        }
        out
    }

    fn models(&mut self, raw: &[Spanned<RawNnModel>]) -> Vec<NnModel> {
        let mut out: Vec<NnModel> = Vec::new();
        for model in raw {
            let m = model.get_ref();
            let name = m.name.get_ref();
            let valid = !name.is_empty()
                && name.len() <= 128
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
            if !valid {
                self.error(m.name.span(), format!("nn.model: invalid name {name:?}: use 1-128 letters, digits, '-', '_', '.' or ':'"));
            } else if out.iter().any(|o| &o.name == name) {
                self.error(m.name.span(), format!("nn.model: duplicate name {name:?}"));
            }
            let sha256 = m.sha256.as_ref().map(|s| {
                let hex = s.get_ref();
                if hex.len() != 64
                    || !hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    self.error(
                        s.span(),
                        format!("nn.model '{name}': sha256 must be 64 lowercase hex digits"),
                    );
                }
                hex.clone()
            });
            out.push(NnModel {
                name: name.clone(),
                path: self.base.join(m.path.get_ref()),
                sha256,
            });
        }
        out
    }
}
