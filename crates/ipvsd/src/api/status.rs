//! `ListServices` / `GetService` answers: the configured services joined
//! with the reals' run-time state, the weights the desired table gives
//! them and, while served, the kernel's counters.

use tandem_proto::ipvs::v1 as pb;

use super::convert;
use crate::backend::RealCounters;
use crate::config::VirtualService;
use crate::ipvs::types::Stats;
use crate::owner::View;
use crate::table::Table;

fn counters(stats: &Stats, conns: RealCounters) -> pb::Counters {
    pb::Counters {
        active_conns: conns.active,
        inactive_conns: conns.inactive,
        persistent_conns: conns.persistent,
        conns: stats.conns,
        in_packets: stats.inpkts,
        out_packets: stats.outpkts,
        in_bytes: stats.inbytes,
        out_bytes: stats.outbytes,
        cps: stats.cps,
        in_pps: stats.inpps,
        out_pps: stats.outpps,
        in_bps: stats.inbps,
        out_bps: stats.outbps,
    }
}

/// The whole table.
pub fn list(view: &View) -> pb::ListServicesResponse {
    let desired = view.model.desired();
    pb::ListServicesResponse {
        services: view
            .model
            .services()
            .iter()
            .map(|vs| service_in(view, &desired, vs))
            .collect(),
        version: view.model.version(),
        serving: view.serving,
        sync: view.serving.then(|| pb::SyncStatus {
            role: match view.sync {
                Some(true) => "master",
                Some(false) => "backup",
                None => "",
            }
            .into(),
            connections: view.counters.as_ref().map_or(0, |c| c.connections()),
        }),
    }
}

/// One service.
pub fn service(view: &View, vs: &VirtualService) -> pb::ServiceStatus {
    service_in(view, &view.model.desired(), vs)
}

fn service_in(view: &View, desired: &Table, vs: &VirtualService) -> pb::ServiceStatus {
    let Some(key) = vs.key() else {
        return pb::ServiceStatus::default();
    };
    let dests = desired.services.get(&key).map(|s| &s.dests);
    let reals = vs
        .reals
        .iter()
        .map(|r| {
            let port = vs.real_port(r);
            let id = (key, r.address, port);
            let state = view.model.state(&id);
            pb::RealStatus {
                real: Some(convert::real_server_to_wire(r)),
                port: port.into(),
                health: convert::health_to_wire(state.health).into(),
                health_detail: state.detail,
                drain: convert::drain_to_wire(state.drain).into(),
                effective_weight: dests
                    .and_then(|d| d.get(&(r.address, port)))
                    .map(|d| u32::try_from(d.weight).unwrap_or(0)),
                counters: view.counters.as_ref().map(|c| {
                    let live = c.reals.get(&id).copied().unwrap_or_default();
                    counters(&live.stats, live)
                }),
            }
        })
        .collect();
    let fallback_active = vs.fallback.is_some_and(|f| {
        dests.is_some_and(|d| d.contains_key(&(f.ip(), f.port())))
            && !vs
                .reals
                .iter()
                .any(|r| r.address == f.ip() && vs.real_port(r) == f.port())
    });
    pb::ServiceStatus {
        service: Some(convert::virtual_service_to_wire(vs)),
        key: key.to_string(),
        reals,
        fallback_active,
        counters: view.counters.as_ref().map(|c| {
            let stats = c.services.get(&key).copied().unwrap_or_default();
            let conns = vs
                .reals
                .iter()
                .filter_map(|r| c.reals.get(&(key, r.address, vs.real_port(r))))
                .fold(RealCounters::default(), |sum, r| RealCounters {
                    active: sum.active + r.active,
                    inactive: sum.inactive + r.inactive,
                    persistent: sum.persistent + r.persistent,
                    stats: sum.stats,
                });
            counters(&stats, conns)
        }),
    }
}
