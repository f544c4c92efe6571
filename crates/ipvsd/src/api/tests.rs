//! `tandem.ipvs.v1` against the recording fake data plane: the error codes
//! of the contract, all-or-nothing changes, Watch, health and drains.

use std::time::Duration;

use tandem_resource::{ResourceHook, State};
use tonic::Code;

use super::*;
use crate::backend::SharedRecording;
use crate::config::IpvsdConfig;

const WEB: &str = "
sync: {interface: eth0, sync_id: 7}
virtual_services:
  - address: 198.51.100.10
    port: 80
    scheduler: wrr
    forward: masq
    reals:
      - address: 198.51.100.101
        weight: 3
      - address: 198.51.100.102
";

fn service(yaml: &str) -> (IpvsService<SharedRecording>, SharedRecording) {
    let config: IpvsdConfig =
        tandem_daemon::config::parse(std::path::Path::new("t.yaml"), yaml).unwrap();
    let fake = SharedRecording::default();
    let machine = ResourceMachine::new("ipvsd", Owner::new(fake.clone(), config).unwrap());
    (IpvsService::new(machine, CancellationToken::new()), fake)
}

async fn serving(yaml: &str) -> (IpvsService<SharedRecording>, SharedRecording) {
    let (svc, fake) = service(yaml);
    svc.owner()
        .enter(State::Stopped, State::Active)
        .await
        .unwrap();
    (svc, fake)
}

fn web_key() -> pb::ServiceKey {
    pb::ServiceKey {
        protocol: pb::Protocol::Tcp.into(),
        address: "198.51.100.10".into(),
        port: 80,
        ..pb::ServiceKey::default()
    }
}

fn real(address: &str) -> pb::RealServer {
    pb::RealServer {
        address: address.into(),
        ..pb::RealServer::default()
    }
}

async fn list(svc: &IpvsService<SharedRecording>) -> pb::ListServicesResponse {
    svc.list_services(Request::new(pb::ListServicesRequest {}))
        .await
        .unwrap()
        .into_inner()
}

async fn weights(fake: &SharedRecording) -> Vec<(String, i32)> {
    let f = fake.0.lock().await;
    f.table
        .services
        .values()
        .flat_map(|s| s.dests.values())
        .map(|d| (d.addr.to_string(), d.weight))
        .collect()
}

fn put_real(address: &str, dry_run: bool) -> Request<pb::PutRealRequest> {
    Request::new(pb::PutRealRequest {
        service: Some(web_key()),
        real: Some(real(address)),
        dry_run,
    })
}

#[tokio::test]
async fn put_real_returns_the_plan_and_a_dry_run_changes_nothing() {
    let (svc, fake) = serving(WEB).await;
    let dry = svc
        .put_real(put_real("198.51.100.103", true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        dry.plan,
        vec!["add real 198.51.100.103:80 to TCP 198.51.100.10:80 (weight 1)".to_string()]
    );
    assert!(!dry.applied);
    assert_eq!(weights(&fake).await.len(), 2);
    let done = svc
        .put_real(put_real("198.51.100.103", false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.plan, dry.plan);
    assert_eq!(weights(&fake).await.len(), 3);
    assert_eq!(list(&svc).await.version, done.version);
}

#[tokio::test]
async fn invalid_requests_name_the_field_and_change_nothing() {
    let (svc, fake) = serving(WEB).await;
    let applied = fake.0.lock().await.applied.len();
    let version = list(&svc).await.version;
    let put = |vs: pb::VirtualService| {
        Request::new(pb::PutServiceRequest {
            service: Some(vs),
            dry_run: false,
        })
    };
    let base = || pb::VirtualService {
        address: "198.51.100.20".into(),
        port: 80,
        forward: pb::Forward::Masq.into(),
        reals: vec![real("198.51.100.101")],
        ..pb::VirtualService::default()
    };
    let cases = [
        (
            pb::VirtualService {
                reals: vec![real("198.51.100.101"), real("198.51.100.101")],
                ..base()
            },
            "service.reals[1].address:",
        ),
        (
            pb::VirtualService {
                scheduler: "fastest".into(),
                ..base()
            },
            "service.scheduler:",
        ),
        (pb::VirtualService { port: 0, ..base() }, "service.port:"),
        (
            pb::VirtualService {
                reals: vec![real("2001:db8::1")],
                ..base()
            },
            "service.reals[0].address:",
        ),
        (
            pb::VirtualService {
                check: Some(pb::CheckSpec {
                    interval_ms: Some(1000),
                    timeout_ms: Some(1000),
                    ..pb::CheckSpec::default()
                }),
                ..base()
            },
            "service.check.timeout:",
        ),
        (
            pb::VirtualService {
                check: Some(pb::CheckSpec {
                    close: 7,
                    ..pb::CheckSpec::default()
                }),
                ..base()
            },
            "service.check.close:",
        ),
        (
            pb::VirtualService {
                check: Some(pb::CheckSpec {
                    r#type: 42,
                    ..pb::CheckSpec::default()
                }),
                ..base()
            },
            "service.check.type:",
        ),
        (
            pb::VirtualService {
                check: Some(pb::CheckSpec {
                    r#type: pb::CheckType::Http.into(),
                    receive: "ok(".into(),
                    receive_regex: true,
                    ..pb::CheckSpec::default()
                }),
                ..base()
            },
            "service.check.receive: not a regular expression",
        ),
        (
            pb::VirtualService {
                reals: vec![pb::RealServer {
                    check: Some(pb::CheckSpec {
                        interval_ms: Some(0),
                        ..pb::CheckSpec::default()
                    }),
                    ..real("198.51.100.101")
                }],
                ..base()
            },
            "service.reals[0].check.interval:",
        ),
    ];
    for (vs, field) in cases {
        let err = svc.put_service(put(vs)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }
    assert_eq!(fake.0.lock().await.applied.len(), applied);
    assert_eq!(list(&svc).await.version, version);
}

#[tokio::test]
async fn a_kernel_refusal_is_aborted_and_rolled_back() {
    let (svc, fake) = serving(WEB).await;
    let before = fake.0.lock().await.table.clone();
    {
        let mut f = fake.0.lock().await;
        let next = f.applied.len();
        f.refuse = vec![next];
    }
    let err = svc
        .put_real(put_real("198.51.100.103", false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert_eq!(fake.0.lock().await.table, before);
    let services = list(&svc).await.services;
    assert_eq!(services[0].reals.len(), 2);
}

#[tokio::test]
async fn unknown_names_are_not_found() {
    let (svc, _fake) = serving(WEB).await;
    let other = pb::ServiceKey {
        port: 81,
        ..web_key()
    };
    let err = svc
        .delete_service(Request::new(pb::DeleteServiceRequest {
            service: Some(other),
            dry_run: false,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = svc
        .drain(Request::new(pb::DrainRequest {
            reals: Some(pb::RealSelector {
                address: "198.51.100.199".into(),
                ..pb::RealSelector::default()
            }),
            ..pb::DrainRequest::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn watch_sends_the_table_then_each_change() {
    let (svc, _fake) = service(WEB);
    let mut stream = svc
        .watch(Request::new(pb::WatchRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.services.len(), 1);
    assert_eq!(first.services[0].reals.len(), 2);
    svc.put_real(put_real("198.51.100.103", false))
        .await
        .unwrap();
    let second = stream.next().await.unwrap().unwrap();
    assert_eq!(second.version, first.version + 1);
    assert_eq!(second.services[0].reals.len(), 3);
}

fn report(address: &str, health: pb::Health, detail: &str) -> pb::HealthReport {
    pb::HealthReport {
        service: Some(web_key()),
        address: address.into(),
        port: 80,
        health: health.into(),
        detail: detail.into(),
    }
}

#[tokio::test]
async fn health_reports_drive_the_weights_and_show_in_the_listing() {
    let (svc, fake) = serving(WEB).await;
    let answer = svc
        .report_health(Request::new(pb::ReportHealthRequest {
            reports: vec![
                report("198.51.100.101", pb::Health::Down, "HTTP 503"),
                report("198.51.100.199", pb::Health::Down, "gone"),
            ],
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.changed, 1);
    assert_eq!(answer.unknown.len(), 1);
    assert!(answer.unknown[0].contains("198.51.100.199"));
    assert_eq!(
        weights(&fake).await,
        vec![("198.51.100.101".into(), 0), ("198.51.100.102".into(), 1)]
    );
    let listed = list(&svc).await;
    let r = &listed.services[0].reals[0];
    assert_eq!(r.health(), pb::Health::Down);
    assert_eq!(r.health_detail, "HTTP 503");
    assert_eq!(r.effective_weight, Some(0));
    assert_eq!(listed.sync.as_ref().unwrap().role, "master");

    // Not known again (an override lifted before any verdict): the real
    // goes back to its configured weight, as an unchecked one has.
    let unknown = svc
        .report_health(Request::new(pb::ReportHealthRequest {
            reports: vec![report("198.51.100.101", pb::Health::Unspecified, "")],
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unknown.changed, 1);
    assert_eq!(
        weights(&fake).await,
        vec![("198.51.100.101".into(), 3), ("198.51.100.102".into(), 1)]
    );
    let r = &list(&svc).await.services[0].reals[0];
    assert_eq!(r.health(), pb::Health::Unspecified);
    assert_eq!(r.health_detail, "");

    let mut bad = report("198.51.100.102", pb::Health::Up, "");
    bad.health = 7;
    let refused = svc
        .report_health(Request::new(pb::ReportHealthRequest {
            reports: vec![report("198.51.100.101", pb::Health::Down, "HTTP 503"), bad],
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused
            .message()
            .starts_with("reports[1].health: 7 is not UNSPECIFIED, UP or DOWN"),
        "{}",
        refused.message()
    );
    assert_eq!(
        weights(&fake).await,
        vec![("198.51.100.101".into(), 3), ("198.51.100.102".into(), 1)],
        "nothing of a refused batch is applied"
    );
}

fn drain_request(
    address: &str,
    remove: bool,
    wait: bool,
    timeout_ms: u32,
) -> Request<pb::DrainRequest> {
    Request::new(pb::DrainRequest {
        reals: Some(pb::RealSelector {
            address: address.into(),
            ..pb::RealSelector::default()
        }),
        timeout_ms: Some(timeout_ms),
        remove,
        wait,
    })
}

fn real_id(address: &str) -> RealId {
    (
        convert::service_key(&web_key()).unwrap(),
        address.parse().unwrap(),
        80,
    )
}

#[tokio::test(start_paused = true)]
async fn a_drain_waits_for_connections_to_end_then_removes_the_real() {
    let (svc, fake) = serving(WEB).await;
    fake.0
        .lock()
        .await
        .conns
        .insert(real_id("198.51.100.101"), 4);
    let started = svc
        .drain(drain_request("198.51.100.101", true, false, 60_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.reals[0].drain(), pb::DrainState::Draining);
    assert_eq!(started.reals[0].active_conns, 4);
    assert_eq!(weights(&fake).await[0], ("198.51.100.101".into(), 0));

    tokio::time::sleep(Duration::from_secs(5)).await;
    let listed = list(&svc).await;
    assert_eq!(
        listed.services[0].reals[0].drain(),
        pb::DrainState::Draining,
        "finished with connections left"
    );

    fake.0.lock().await.conns.clear();
    tokio::time::sleep(drain::POLL * 2).await;
    assert_eq!(list(&svc).await.services[0].reals.len(), 1, "not removed");
    assert_eq!(weights(&fake).await, vec![("198.51.100.102".into(), 1)]);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_drain_that_times_out_says_so_and_undrain_restores_the_weight() {
    let (svc, fake) = serving(WEB).await;
    fake.0
        .lock()
        .await
        .conns
        .insert(real_id("198.51.100.101"), 2);
    let done = svc
        .drain(drain_request("198.51.100.101", false, true, 3_000))
        .await
        .unwrap()
        .into_inner();
    let r = &done.reals[0];
    assert_eq!(r.drain(), pb::DrainState::Drained);
    assert!(r.timed_out);
    assert!(!r.removed);
    assert_eq!(r.active_conns, 2);
    assert_eq!(weights(&fake).await[0].1, 0);

    let back = svc
        .undrain(Request::new(pb::UndrainRequest {
            reals: Some(pb::RealSelector {
                address: "198.51.100.101".into(),
                ..pb::RealSelector::default()
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(back.reals[0].drain(), pb::DrainState::Unspecified);
    assert_eq!(weights(&fake).await[0].1, 3);
}

#[tokio::test(start_paused = true)]
async fn an_undrain_during_a_drain_stops_it() {
    let (svc, fake) = serving(WEB).await;
    fake.0
        .lock()
        .await
        .conns
        .insert(real_id("198.51.100.101"), 1);
    svc.drain(drain_request("198.51.100.101", true, false, 60_000))
        .await
        .unwrap();
    svc.undrain(Request::new(pb::UndrainRequest {
        reals: Some(pb::RealSelector {
            address: "198.51.100.101".into(),
            ..pb::RealSelector::default()
        }),
    }))
    .await
    .unwrap();
    fake.0.lock().await.conns.clear();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        list(&svc).await.services[0].reals.len(),
        2,
        "an undone drain removed the real"
    );
    assert_eq!(weights(&fake).await[0].1, 3);
}

#[tokio::test]
async fn apply_takes_ipvsadm_rules_and_export_gives_them_back() {
    let (svc, fake) = serving(WEB).await;
    let rules = "-A -t 198.51.100.10:80 -s rr\n\
                 -a -t 198.51.100.10:80 -r 198.51.100.11:80 -i -w 1 --tun-type ipip\n\
                 -a -t 198.51.100.10:80 -r 198.51.100.12:80 -i -w 1 --tun-type ipip\n";
    let applied = svc
        .apply(Request::new(pb::ApplyRequest {
            table: Some(pb::apply_request::Table::IpvsadmRules(rules.into())),
            dry_run: false,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!applied.plan.is_empty());
    assert_eq!(weights(&fake).await.len(), 2);
    let exported = svc
        .export_rules(Request::new(pb::ExportRulesRequest { kernel: true }))
        .await
        .unwrap()
        .into_inner()
        .rules;
    assert_eq!(exported, rules);

    // A probe service in the rules (an export of a table with through_vip
    // checks) is skipped, not refused.
    let with_probe = format!(
        "{rules}-A -f 2046820352 -s rr\n-a -f 2046820352 -r 198.51.100.11:0 -i -w 1 --tun-type ipip\n"
    );
    svc.apply(Request::new(pb::ApplyRequest {
        table: Some(pb::apply_request::Table::IpvsadmRules(with_probe)),
        dry_run: false,
    }))
    .await
    .unwrap();
    assert_eq!(fake.0.lock().await.table.services.len(), 1);

    let broken = svc
        .apply(Request::new(pb::ApplyRequest {
            table: Some(pb::apply_request::Table::IpvsadmRules(
                "-A -t nowhere -s rr\n".into(),
            )),
            dry_run: false,
        }))
        .await
        .unwrap_err();
    assert_eq!(broken.code(), Code::InvalidArgument);
    assert!(
        broken.message().starts_with("ipvsadm_rules: line 1"),
        "{}",
        broken.message()
    );
}

#[tokio::test]
async fn while_stopped_changes_are_kept_with_an_empty_plan() {
    let (svc, fake) = service(WEB);
    let change = svc
        .put_real(put_real("198.51.100.103", false))
        .await
        .unwrap()
        .into_inner();
    assert!(change.plan.is_empty() && change.applied);
    assert!(fake.0.lock().await.applied.is_empty());
    let listed = list(&svc).await;
    assert!(!listed.serving);
    assert!(listed.services[0].reals[2].counters.is_none());
}
