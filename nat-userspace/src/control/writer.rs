//! The one writer of the data-plane snapshot ([`DataplaneSnapshot`]): every change (a new external
//! address from a source or `set external-ip`, a reloaded config) is a load-modify-publish
//! under one mutex, so two writers never publish over each other's change whatever
//! runtime or thread they run on. The mutex is on the writer side only: the workers keep
//! reading the published snapshot lock-free ([`crate::snapshot`]).
//!
//! The writer also owns what `status` says about the external address (its source, when
//! it was last confirmed, whether it is stale: [`ExternalState`]); its `addrs` are copied
//! from the snapshot under the same lock, so the two never disagree.

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use crate::{
    datapath::{DatapathState, DataplaneSnapshot},
    nat::ExternalAddrs,
};

/// Where the external address came from and when.
#[derive(Clone, Debug)]
pub struct ExternalState {
    pub source: String,
    pub addrs: ExternalAddrs,
    pub updated: Option<SystemTime>,
    pub stale: bool,
}

/// A new external address from a source: the addresses, the source as text (e.g.
/// `stun:stun.example.net:3478 / interface:eth0`, `cli`), and whether any family's
/// address is stale (kept after its source stopped confirming it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalUpdate {
    pub addrs: ExternalAddrs,
    pub source: String,
    pub stale: bool,
}

pub struct DataplaneWriter {
    shared: Arc<DatapathState>,
    /// Held for the whole load-modify-publish.
    external: Mutex<ExternalState>,
}

impl DataplaneWriter {
    /// The writer of `shared.dataplane`; `source` names the configured external source.
    pub fn new(shared: Arc<DatapathState>, source: String) -> DataplaneWriter {
        let addrs = shared.dataplane.load().external;
        DataplaneWriter {
            shared,
            external: Mutex::new(ExternalState {
                source,
                addrs,
                updated: (!addrs.is_empty()).then(SystemTime::now),
                stale: false,
            }),
        }
    }

    /// The published snapshot.
    pub fn current(&self) -> Arc<DataplaneSnapshot> {
        self.shared.dataplane.load()
    }

    /// The external address and its provenance.
    pub fn external(&self) -> ExternalState {
        self.external.lock().expect("dataplane writer lock").clone()
    }

    /// Runs `f` on a copy of the current snapshot and on the external address's state
    /// (whose `addrs` are the snapshot's before the change), then publishes the copy when
    /// it differs. Writers are serialised; `f` must not call back into the writer. `f`
    /// replaces the snapshot (`DataplaneSnapshot::new`, `DataplaneSnapshot::with_external`) rather than
    /// writing its fields: the rewriter's gates are built from them.
    pub fn update<R>(&self, f: impl FnOnce(&mut DataplaneSnapshot, &mut ExternalState) -> R) -> R {
        let mut state = self.external.lock().expect("dataplane writer lock");
        let cur = self.shared.dataplane.load();
        let mut next = (*cur).clone();
        state.addrs = cur.external;
        let r = f(&mut next, &mut state);
        state.addrs = next.external;
        if !next.same_as(&cur) {
            self.shared.dataplane.publish(next);
        }
        r
    }
}
