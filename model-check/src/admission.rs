//! The hot path's admission as the simulated processes run it: the same decisions as
//! `Breaker::try_acquire` over a [`Snapshot`], single-threaded. The fleet harness and the
//! exhaustive model both admit calls through it, so the two judge the machine against the
//! same hot path.

use breaker_actors::machine::{Admission, Snapshot};

/// One process's admission state: the snapshot it enforces and what it has let through.
#[derive(Debug, Clone)]
pub(crate) struct Admitter {
    /// The snapshot enforced.
    pub(crate) snapshot: Snapshot,
    /// The probe round of the last probe snapshot installed.
    probe_round: Option<u64>,
    /// Probes admitted in that round.
    pub(crate) probes_issued: u32,
    /// Running sum of `per_mille` for fractional admission.
    pub(crate) fraction_acc: u32,
}

impl Admitter {
    pub(crate) fn new(snapshot: Snapshot) -> Self {
        Self { snapshot, probe_round: None, probes_issued: 0, fraction_acc: 0 }
    }

    /// The probe round whose count `probes_issued` is.
    pub(crate) fn probe_round(&self) -> Option<u64> {
        self.probe_round
    }

    /// Enforces `snapshot` from now on. A grant is a total for its probe round, which can
    /// outlive snapshot generations and even snapshots that admit no probe: like the real
    /// allowance, only a probe snapshot of another round resets the count.
    pub(crate) fn install(&mut self, snapshot: Snapshot) {
        if let Admission::Probe { round, .. } = snapshot.admission {
            if self.probe_round != Some(round) {
                self.probe_round = Some(round);
                self.probes_issued = 0;
            }
        }
        self.snapshot = snapshot;
    }

    /// A probe of the current round ended neutral (ignored) or without an outcome: its
    /// slot is free again, as `Permit::ignore` and a dropped permit make it on the real
    /// hot path. The grant bounds probes in flight plus probes that ended decisively.
    pub(crate) fn give_back(&mut self) {
        self.probes_issued = self.probes_issued.saturating_sub(1);
    }

    /// Whether the next call is admitted (`None`: rejected), and whether as a probe.
    pub(crate) fn admit(&mut self) -> Option<bool> {
        match self.snapshot.admission {
            Admission::Allow => Some(false),
            Admission::Reject => None,
            Admission::Probe { grant, .. } => (self.probes_issued < grant).then(|| {
                self.probes_issued += 1;
                true
            }),
            Admission::Fraction { per_mille } => {
                self.fraction_acc += u32::from(per_mille);
                (self.fraction_acc >= 1000).then(|| {
                    self.fraction_acc -= 1000;
                    false
                })
            }
        }
    }
}
