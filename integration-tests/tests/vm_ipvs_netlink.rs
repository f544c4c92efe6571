//! ipvsd's IPVS netlink client against a real kernel (the VM tier), checked
//! both ways with ipvsadm: what the client writes, ipvsadm reads; what
//! ipvsadm writes, the client reads.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::net::IpAddr;
use std::time::Duration;

use tandem_integration_tests::block_on;
use tandem_integration_tests::guest::{run_in_vm, run_in_vm_with, sh};
use tandem_ipvsd::ipvs::abi::svc_flag;
use tandem_ipvsd::ipvs::client::{ClientError, IpvsClient};
use tandem_ipvsd::ipvs::codec;
use tandem_ipvsd::ipvs::types::{
    Dest, Family, Forward, Protocol, Service, ServiceKey, SyncDaemon, SyncRole, Timeouts, Tunnel,
};

const VM_TIMEOUT: Duration = Duration::from_secs(240);

/// The schedulers Linux ships (twos since 6.7).
const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
];

fn tcp(addr: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: addr.parse().unwrap(),
        port,
    }
}

fn service(key: ServiceKey, scheduler: &str) -> Service {
    let netmask = if key.family() == Family::V6 {
        128
    } else {
        u32::MAX
    };
    Service {
        key,
        scheduler: scheduler.into(),
        flags: 0,
        timeout: 0,
        netmask,
        pe_name: None,
    }
}

fn dest(addr: &str, port: u16, forward: Forward, weight: i32) -> Dest {
    Dest {
        addr: addr.parse().unwrap(),
        port,
        forward,
        tunnel: Tunnel::Ipip,
        weight,
        upper: 0,
        lower: 0,
    }
}

fn saved() -> String {
    sh("ipvsadm-save -n")
}

#[test]
fn ipvsadm_reads_what_the_client_writes() {
    run_in_vm("ipvsadm_reads_what_the_client_writes", VM_TIMEOUT, || {
        block_on(async {
            let mut ipvs = IpvsClient::connect().await.unwrap();
            let info = ipvs.info().await.unwrap();
            assert_eq!(info.version >> 16, 1, "IPVS major version: {info:?}");

            // Every scheduler the kernel has; a missing one is refused by name.
            for (i, sched) in SCHEDULERS.iter().enumerate() {
                let key = tcp("198.51.100.10", 1000 + i as u16);
                match ipvs.add_service(&service(key, sched)).await {
                    Ok(()) => assert!(
                        saved().contains(&format!("-A -t 198.51.100.10:{} -s {sched}", 1000 + i)),
                        "{sched} not in ipvsadm-save:\n{}",
                        saved()
                    ),
                    Err(ClientError::Kernel { what, source }) => {
                        assert_eq!(
                            *sched, "twos",
                            "only twos may be missing (6.1): {what}: {source}"
                        );
                        assert_eq!(source.errno, 2);
                        assert!(what.contains("TCP 198.51.100.10:1013"), "{what}");
                    }
                    Err(e) => panic!("{sched}: {e}"),
                }
            }

            // Every forwarding method, with weights and thresholds.
            let web = tcp("198.51.100.10", 80);
            ipvs.add_service(&service(web, "wrr")).await.unwrap();
            let mut nat = dest("198.51.100.101", 8080, Forward::Masq, 3);
            nat.upper = 100;
            nat.lower = 50;
            ipvs.add_dest(&web, &nat).await.unwrap();
            ipvs.add_dest(&web, &dest("198.51.100.102", 80, Forward::Route, 1))
                .await
                .unwrap();
            ipvs.add_dest(&web, &dest("198.51.100.103", 80, Forward::Tunnel, 2))
                .await
                .unwrap();
            let mut gue = dest("203.0.113.104", 80, Forward::Tunnel, 1);
            gue.tunnel = Tunnel::Gue {
                port: 6080,
                flags: 0,
            };
            ipvs.add_dest(&web, &gue).await.unwrap();
            let text = saved();
            for line in [
                "-A -t 198.51.100.10:80 -s wrr",
                "-a -t 198.51.100.10:80 -r 198.51.100.101:8080 -m -w 3\n",
                "-a -t 198.51.100.10:80 -r 198.51.100.102:80 -g -w 1\n",
                "-a -t 198.51.100.10:80 -r 198.51.100.103:80 -i -w 2 --tun-type ipip\n",
                "-a -t 198.51.100.10:80 -r 203.0.113.104:80 -i -w 1 --tun-type gue --tun-port 6080",
            ] {
                assert!(text.contains(line), "missing `{line}` in:\n{text}");
            }
            // ipvsadm-save leaves thresholds out; the listing shows them.
            let thresholds = sh("ipvsadm -Ln --thresholds");
            assert!(
                thresholds.lines().any(|l| l.contains("198.51.100.101:8080")
                    && l.contains("100")
                    && l.contains("50")),
                "thresholds not shown:\n{thresholds}"
            );
            let listed = sh("ipvsadm -Ln --tun-info");
            assert!(
                listed.contains("gue") && listed.contains("6080"),
                "GUE tunnel not shown:\n{listed}"
            );

            // Edit and delete, each seen by ipvsadm.
            let mut heavier = dest("198.51.100.102", 80, Forward::Route, 9);
            heavier.upper = 7;
            ipvs.edit_dest(&web, &heavier).await.unwrap();
            assert!(
                saved().contains("-r 198.51.100.102:80 -g -w 9\n"),
                "{}",
                saved()
            );
            ipvs.delete_dest(&web, &"198.51.100.101".parse().unwrap(), 8080)
                .await
                .unwrap();
            assert!(!saved().contains("198.51.100.101"), "{}", saved());
            let mut persistent = service(web, "sh");
            persistent.flags = svc_flag::PERSISTENT | svc_flag::SCHED1;
            persistent.timeout = 600;
            ipvs.edit_service(&persistent).await.unwrap();
            assert!(
                saved().contains("-A -t 198.51.100.10:80 -s sh -p 600 -b sh-fallback"),
                "{}",
                saved()
            );
            ipvs.delete_service(&web).await.unwrap();
            assert!(!saved().contains("198.51.100.10:80 "), "{}", saved());

            // Refusals name the object and the errno.
            let err = ipvs
                .add_dest(&web, &dest("198.51.100.102", 80, Forward::Route, 1))
                .await
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains("adding real 198.51.100.102:80 to TCP 198.51.100.10:80"),
                "{err}"
            );
        });
    });
}

#[test]
fn the_client_reads_what_ipvsadm_writes() {
    run_in_vm("the_client_reads_what_ipvsadm_writes", VM_TIMEOUT, || {
        sh("ipvsadm -A -u 203.0.113.53:53 -s sh -b flag-1,flag-2 -o
            ipvsadm -a -u 203.0.113.53:53 -r 203.0.113.101:53 -m -w 3 -x 100 -y 50
            ipvsadm -A -f 7 -s mh -p 300 -M 255.255.255.0
            ipvsadm -a -f 7 -r 198.51.100.101 -g -w 0
            ipvsadm -A -t [2001:db8::10]:443 -s lc
            ipvsadm -a -t [2001:db8::10]:443 -r [2001:db8::101]:443 -g -w 5
            ipvsadm -A --sctp-service 198.51.100.10:3868 -s nq
            ipvsadm --set 900 60 30
            ipvsadm --start-daemon master --mcast-interface lo --syncid 9");
        block_on(async {
            let mut ipvs = IpvsClient::connect().await.unwrap();
            let table = ipvs.table().await.unwrap();
            assert_eq!(table.len(), 4, "{table:#?}");
            let find =
                |key: &ServiceKey| table.iter().find(|(s, _)| s.service.key == *key).unwrap();

            let dns = ServiceKey::Addr {
                protocol: Protocol::Udp,
                addr: "203.0.113.53".parse().unwrap(),
                port: 53,
            };
            let (s, reals) = find(&dns);
            assert_eq!(s.service.scheduler, "sh");
            assert_eq!(
                s.service.flags,
                svc_flag::SCHED1 | svc_flag::SCHED2 | svc_flag::ONEPACKET,
                "sh-fallback, sh-port and one-packet"
            );
            assert_eq!(reals.len(), 1);
            let r = &reals[0].dest;
            assert_eq!(
                (r.forward, r.weight, r.upper, r.lower),
                (Forward::Masq, 3, 100, 50)
            );
            assert_eq!(r.addr, "203.0.113.101".parse::<IpAddr>().unwrap());

            let (s, reals) = find(&ServiceKey::Fwmark {
                family: Family::V4,
                mark: 7,
            });
            assert_eq!(
                (s.service.scheduler.as_str(), s.service.timeout),
                ("mh", 300)
            );
            assert_eq!(s.service.flags & svc_flag::PERSISTENT, svc_flag::PERSISTENT);
            assert_eq!(s.service.netmask, 0xffff_ff00);
            assert_eq!((reals[0].dest.port, reals[0].dest.weight), (0, 0));

            let (s, reals) = find(&tcp("2001:db8::10", 443));
            assert_eq!(
                (s.service.scheduler.as_str(), s.service.netmask),
                ("lc", 128)
            );
            assert_eq!(
                reals[0].dest.addr,
                "2001:db8::101".parse::<IpAddr>().unwrap()
            );
            assert_eq!(
                (reals[0].dest.forward, reals[0].dest.weight),
                (Forward::Route, 5)
            );

            let sctp = ServiceKey::Addr {
                protocol: Protocol::Sctp,
                addr: "198.51.100.10".parse().unwrap(),
                port: 3868,
            };
            assert!(find(&sctp).1.is_empty());

            let t = ipvs.timeouts().await.unwrap();
            assert_eq!(
                t,
                Timeouts {
                    tcp: 900,
                    tcp_fin: 60,
                    udp: 30
                }
            );
            let daemons = ipvs.daemons().await.unwrap();
            assert_eq!(daemons.len(), 1, "{daemons:?}");
            assert_eq!(
                (
                    daemons[0].role,
                    daemons[0].ifname.as_str(),
                    daemons[0].sync_id
                ),
                (SyncRole::Master, "lo", 9)
            );
        });
    });
}

#[test]
fn sync_daemons_timeouts_and_a_pipelined_bulk_load() {
    run_in_vm(
        "sync_daemons_timeouts_and_a_pipelined_bulk_load",
        VM_TIMEOUT,
        || {
            block_on(async {
                let mut ipvs = IpvsClient::connect().await.unwrap();
                let backup = SyncDaemon {
                    role: SyncRole::Backup,
                    ifname: "lo".into(),
                    sync_id: 4,
                    max_len: None,
                    group: None,
                    port: None,
                    ttl: None,
                };
                ipvs.start_daemon(&backup).await.unwrap();
                let shown = sh("ipvsadm -L --daemon");
                assert!(
                    shown.contains("backup sync daemon") && shown.contains("syncid=4"),
                    "{shown}"
                );
                ipvs.stop_daemon(SyncRole::Backup).await.unwrap();
                assert!(!sh("ipvsadm -L --daemon").contains("backup"));

                ipvs.set_timeouts(&Timeouts {
                    tcp: 7200,
                    tcp_fin: 0,
                    udp: 0,
                })
                .await
                .unwrap();
                assert!(
                    sh("ipvsadm -L --timeout").contains("7200"),
                    "{}",
                    sh("ipvsadm -L --timeout")
                );

                // 100 services x 10 reals in one pipelined call.
                let mut requests = Vec::new();
                for s in 0..100u16 {
                    let key = tcp("198.51.100.10", 2000 + s);
                    requests.push(codec::new_service(&service(key, "wlc")).unwrap());
                    for r in 0..10u8 {
                        let real = dest(&format!("203.0.113.{}", 100 + r), 80, Forward::Route, 1);
                        requests.push(codec::new_dest(&key, &real).unwrap());
                    }
                }
                let outcomes = ipvs.execute(requests).await.unwrap();
                assert_eq!(outcomes.len(), 1100);
                assert!(outcomes.iter().all(Result::is_ok));
                let listed = sh("ipvsadm-save -n");
                assert_eq!(listed.lines().filter(|l| l.starts_with("-A")).count(), 100);
                assert_eq!(listed.lines().filter(|l| l.starts_with("-a")).count(), 1000);
                let table = ipvs.table().await.unwrap();
                assert_eq!(table.iter().map(|(_, d)| d.len()).sum::<usize>(), 1000);

                // A repeated add fails alone; its neighbours still apply.
                let again = vec![
                    codec::new_service(&service(tcp("198.51.100.10", 2000), "wlc")).unwrap(),
                    codec::new_service(&service(tcp("198.51.100.10", 3000), "wlc")).unwrap(),
                ];
                let outcomes = ipvs.execute(again).await.unwrap();
                assert_eq!(outcomes[0].as_ref().unwrap_err().errno, 17, "EEXIST");
                assert!(outcomes[1].is_ok());
            });
        },
    );
}

#[test]
fn reconcile_adopts_the_kernel_table_and_repairs_drift() {
    use tandem_ipvsd::backend::{Backend, KernelBackend};
    use tandem_ipvsd::reconcile::reconcile;

    run_in_vm(
        "reconcile_adopts_the_kernel_table_and_repairs_drift",
        VM_TIMEOUT,
        || {
            // The seed's /etc/sysconfig/ipvsadm rules, on test addresses.
            sh("ipvsadm -A -t 198.51.100.10:80 -s rr
            ipvsadm -a -t 198.51.100.10:80 -r 198.51.100.11:80 -i
            ipvsadm -a -t 198.51.100.10:80 -r 198.51.100.12:80 -i
            ipvsadm -a -t 198.51.100.10:80 -r 198.51.100.101:80 -i
            ipvsadm -a -t 198.51.100.10:80 -r 198.51.100.102:80 -i
            ipvsadm -a -t 198.51.100.10:80 -r 198.51.100.103:80 -i");
            block_on(async {
                let mut kernel = KernelBackend::connect().await.unwrap();
                let desired = kernel.read().await.unwrap();
                assert_eq!((desired.services.len(), desired.dest_count()), (1, 5));

                // Restart adoption: the kernel already has what we want.
                let adopted = reconcile(&mut kernel, &desired, false).await.unwrap();
                assert!(
                    adopted.plan.is_empty(),
                    "adoption issued {:?}",
                    adopted.plan
                );

                // Drift: a real removed and a weight changed by hand.
                sh("ipvsadm -d -t 198.51.100.10:80 -r 198.51.100.102:80
                ipvsadm -e -t 198.51.100.10:80 -r 198.51.100.103:80 -i -w 7");
                let shown = reconcile(&mut kernel, &desired, true).await.unwrap();
                assert_eq!(shown.plan.len(), 2, "{:?}", shown.plan);
                assert!(
                    sh("ipvsadm-save -n").contains("198.51.100.103:80 -i -w 7"),
                    "a dry run changed the kernel"
                );
                let repaired = reconcile(&mut kernel, &desired, false).await.unwrap();
                assert!(
                    repaired.converged() && repaired.applied.len() == 2,
                    "{repaired:?}"
                );
                let text = sh("ipvsadm-save -n");
                assert!(text.contains("-r 198.51.100.102:80 -i -w 1"), "{text}");
                assert!(text.contains("-r 198.51.100.103:80 -i -w 1"), "{text}");
                assert_eq!(kernel.read().await.unwrap(), desired);
            });
        },
    );
}

#[test]
fn exported_rules_are_byte_identical_to_ipvsadm_save() {
    use tandem_ipvsd::backend::{Backend, KernelBackend};
    use tandem_ipvsd::reconcile::reconcile;
    use tandem_ipvsd::rules;

    run_in_vm(
        "exported_rules_are_byte_identical_to_ipvsadm_save",
        VM_TIMEOUT,
        || {
            let rules_text = "\
-A -t 198.51.100.10:80 -s wrr -p 600 -M 255.255.255.0
-a -t 198.51.100.10:80 -r 198.51.100.101:8080 -m -w 3 -x 100 -y 10
-a -t 198.51.100.10:80 -r 198.51.100.102:80 -g -w 1
-a -t 198.51.100.10:80 -r 10.0.0.7:80 -i -w 2
-a -t 198.51.100.10:80 -r 203.0.113.104:80 -i -w 0 --tun-type gue --tun-port 6080 --tun-csum
-A -u 203.0.113.53:53 -s sh -o -b sh-fallback,sh-port
-a -u 203.0.113.53:53 -r 203.0.113.101:53 -m -w 5
-A -t 10.9.9.9:443 -s mh -b mh-port
-A --sctp-service 198.51.100.10:3868 -s nq
-A -t [2001:db8::10]:443 -s lc -p 120 -M 64
-a -t [2001:db8::10]:443 -r [2001:db8::101]:443 -g -w 7
-A -f 7 -s rr
-a -f 7 -r 198.51.100.103:0 -i -w 1 --tun-type gre --tun-nocsum
-A -f 9 -6 -s fo
";
            let desired = rules::import(rules_text).unwrap();
            block_on(async {
                let mut kernel = KernelBackend::connect().await.unwrap();
                let report = reconcile(&mut kernel, &desired, false).await.unwrap();
                assert!(report.converged(), "{report:?}");
                let ours = rules::export(&kernel.read().await.unwrap());
                let theirs = sh("ipvsadm-save -n");
                assert_eq!(ours, theirs, "export differs from ipvsadm-save -n");
                // And what ipvsadm -R loads from our export is the same table.
                sh("ipvsadm -C");
                let mut restore = std::process::Command::new("ipvsadm")
                    .arg("-R")
                    .stdin(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                std::io::Write::write_all(&mut restore.stdin.take().unwrap(), ours.as_bytes())
                    .unwrap();
                assert!(restore.wait().unwrap().success());
                // The same table, but for thresholds: ipvsadm-save never prints -x/-y.
                let mut without_thresholds = desired.clone();
                for spec in without_thresholds.services.values_mut() {
                    for d in spec.dests.values_mut() {
                        (d.upper, d.lower) = (0, 0);
                    }
                }
                assert_eq!(kernel.read().await.unwrap(), without_thresholds);
            });
        },
    );
}

#[test]
fn ipvsd_killed_and_restarted_adopts_the_table_with_no_operation() {
    use tandem_integration_tests::process::Daemon;

    run_in_vm_with(
        "ipvsd_killed_and_restarted_adopts_the_table_with_no_operation",
        &["ipvsd"],
        VM_TIMEOUT,
        || {
            let config = "/tmp/ipvsd.yaml";
            std::fs::write(
                config,
                "virtual_services:\n  - address: 198.51.100.10\n    port: 80\n    scheduler: rr\n    \
                 forward: tunnel\n    reals:\n      - address: 198.51.100.101\n      - address: 198.51.100.102\n",
            )
            .unwrap();
            let standby = |epoch: u64, log: &str| {
                let socket = std::path::Path::new("/tmp/ipvsd.sock");
                let mut ipvsd = Daemon::start_logging(
                    "ipvsd",
                    &["--listen", "/tmp/ipvsd.sock", "--config", config],
                    std::path::Path::new(log),
                );
                ipvsd.wait_for_socket(socket);
                block_on(async {
                    let channel = tandem_daemon::client::connect_unix(socket).await.unwrap();
                    let mut client =
                        tandem_proto::resource::v1::resource_client::ResourceClient::new(channel);
                    client
                        .transition(tandem_proto::resource::v1::TransitionRequest {
                            target: tandem_proto::resource::v1::State::Standby.into(),
                            epoch,
                        })
                        .await
                        .unwrap();
                });
                ipvsd
            };
            let first = standby(1, "/tmp/ipvsd-1.log");
            let table = saved();
            assert_eq!(
                table.lines().filter(|l| l.starts_with("-a")).count(),
                2,
                "{table}"
            );
            first.signal(rustix::process::Signal::KILL);
            drop(first);
            assert_eq!(saved(), table, "the kernel table must outlive ipvsd");

            let _second = standby(2, "/tmp/ipvsd-2.log");
            assert_eq!(saved(), table, "a restart changed the table");
            let log = std::fs::read_to_string("/tmp/ipvsd-2.log").unwrap();
            assert!(
                log.contains("kernel table reconciled") && log.contains("operations=0"),
                "the restarted ipvsd issued operations:\n{log}"
            );
        },
    );
}
