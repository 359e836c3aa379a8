//! The registry's side of the tuning lifecycle: settling which config a breaker runs on
//! when it is registered (the pure rule is [`resolve_tuning`]; this writes what it says to
//! the config bucket and tells the decider), and switching a running breaker to the fleet's
//! config when its machine asks ([`Effect::ReloadConfig`](crate::machine::Effect)).
//! `docs/tuning.md` is the guide.

use std::sync::Arc;

use super::{RegistryError, Shared};
use crate::hot::HotSettings;
use crate::machine::{
    BreakerConfig, BreakerName, Command, CommandKind, ConfigRecord, ConfigSource, Input, Tuning, ValidConfig,
    WIRE_VERSION, resolve_tuning,
};
use crate::observe::names;
use crate::transport::ConfigWrite;

/// Tries at settling a breaker's config: each lost CAS means another node or an operator
/// wrote in between, and the rule is applied again to what they wrote.
pub(crate) const SETTLE_ATTEMPTS: u32 = 4;

/// The config `name` runs on when this node registers it with `local`: its own, or the
/// fleet's if the rule says to follow it (with a warning). Publishes or replaces the fleet's
/// as the rule says; a replacement also tells the decider, which records the switch.
pub(super) async fn settle(
    shared: &Shared,
    name: &BreakerName,
    local: &BreakerConfig,
) -> Result<BreakerConfig, RegistryError> {
    for _ in 0..SETTLE_ATTEMPTS {
        let fleet = shared.transport.read_config(name).await.map_err(RegistryError::Transport)?;
        let (expected, replaced) = match resolve_tuning(local, fleet.as_ref().map(|f| &f.record)) {
            Tuning::Keep => return Ok(local.clone()),
            Tuning::Follow { fleet } => {
                tracing::warn!(
                    breaker = name.as_str(),
                    local_version = local.version,
                    fleet_version = fleet.version,
                    "this node's config of the breaker differs from the fleet's: running on the fleet's"
                );
                // Before the breaker exists (if it is new here): the series its creation
                // registers is this one.
                let labels = [("breaker", name.as_str().to_owned()), ("node", shared.node.as_str().to_owned())];
                metrics::counter!(names::CONFIG_FOLLOWED, &labels).increment(1);
                return Ok(*fleet);
            }
            Tuning::Publish => (0, None),
            Tuning::Replace { previous } => (fleet.as_ref().map_or(0, |f| f.revision), Some(previous)),
        };
        let record =
            ConfigRecord { config: local.clone(), source: ConfigSource::Deployed { node: shared.node.clone() } };
        match shared.transport.write_config(name, record, expected).await.map_err(RegistryError::Transport)? {
            ConfigWrite::Conflict => {}
            ConfigWrite::Written(_) => {
                if let Some(previous) = replaced {
                    tracing::info!(
                        breaker = name.as_str(),
                        from = previous,
                        to = local.version,
                        "deployed a newer config version to the fleet"
                    );
                    let command = Command {
                        version: WIRE_VERSION,
                        breaker: name.clone(),
                        kind: CommandKind::Reconfigure,
                        actor: shared.node.as_str().to_owned(),
                        reason: format!("config version {} deployed over {previous}", local.version),
                        duration_ms: None,
                    };
                    shared.transport.publish_command(command).await.map_err(RegistryError::Transport)?;
                }
                return Ok(local.clone());
            }
        }
    }
    Err(RegistryError::ConfigContended { breaker: name.clone(), attempts: SETTLE_ATTEMPTS })
}

/// Switches the running breaker `name` to `config` if it runs on another: the registry's
/// entry (what restarts and later gets use), the hot path's settings, and the machine
/// (through its inbox, in order with everything else it is fed).
pub(super) async fn switch(shared: &Shared, name: &BreakerName, config: BreakerConfig, valid: ValidConfig) {
    let inbox = {
        let mut entries = shared.entries();
        let Some(entry) = entries.get_mut(name) else { return };
        if entry.config == config {
            return;
        }
        entry.hot.set_settings(HotSettings::from_config(&valid));
        entry.config = config;
        entry.valid = Arc::new(valid.clone());
        entry.inbox.clone()
    };
    let _ = inbox.push(Input::Reconfigure(Box::new(valid)), None).await;
}

/// What a machine's [`Effect::ReloadConfig`](crate::machine::Effect) asks: reads the
/// fleet's config of `name` and switches to it if it differs. A fleet config this node
/// cannot run (invalid here) is logged and counted, and the breaker keeps its own.
pub(crate) async fn reload(shared: Arc<Shared>, name: BreakerName) {
    let fleet = match shared.transport.read_config(&name).await {
        Ok(Some(fleet)) => fleet,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(breaker = name.as_str(), error = %e, "could not read the fleet's config");
            return;
        }
    };
    let config = fleet.record.config;
    match config.validate() {
        Ok(valid) => switch(&shared, &name, config, valid).await,
        Err(e) => {
            tracing::warn!(breaker = name.as_str(), error = %e, "the fleet's config of the breaker is not valid here");
            let metrics = shared.entries().get(&name).map(|e| e.metrics.clone());
            if let Some(metrics) = metrics {
                metrics.config_refused();
            }
        }
    }
}
