//! Golden bytes derived by hand from `ip_vs.h` and the netlink wire format
//! (nlmsghdr 16 bytes, genlmsghdr 4, attributes `len:u16 type:u16 payload`
//! padded to 4; nested attributes carry NLA_F_NESTED = 0x8000), and
//! round trips through the decoder.

use super::*;

const FAMILY_ID: u16 = 0x0024;

fn bytes(req: Request, seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    write(&frame(req, FAMILY_ID, seq, true).unwrap(), &mut out).unwrap();
    out
}

fn vip_http() -> Service {
    Service {
        key: ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: "198.51.100.10".parse().unwrap(),
            port: 80,
        },
        scheduler: "rr".into(),
        flags: 0,
        timeout: 0,
        netmask: 0xffff_ffff,
        pe_name: None,
    }
}

fn real(addr: &str) -> Dest {
    Dest {
        addr: addr.parse().unwrap(),
        port: 80,
        forward: Forward::Route,
        tunnel: Tunnel::Ipip,
        weight: 1,
        upper: 0,
        lower: 0,
    }
}

/// The service-key attributes of TCP 198.51.100.10:80 (32 bytes).
const KEY_V4_TCP_80: [u8; 32] = [
    6, 0, 1, 0, 2, 0, 0, 0, // AF = AF_INET (u16) + 2 pad
    6, 0, 2, 0, 6, 0, 0, 0, // PROTOCOL = 6 (TCP)
    8, 0, 3, 0, 198, 51, 100, 10, // ADDR, network order
    6, 0, 4, 0, 0, 80, 0, 0, // PORT = 80, big-endian (be16) + 2 pad
];

#[test]
fn new_service_matches_the_abi() {
    // `ipvsadm -A -t 198.51.100.10:80 -s rr`
    let mut expected = vec![
        92, 0, 0, 0, // nlmsg_len = 16 + 4 + 72
        0x24, 0, // nlmsg_type = the IPVS family id
        5, 0, // NLM_F_REQUEST | NLM_F_ACK
        7, 0, 0, 0, // seq
        0, 0, 0, 0, // pid
        1, 1, 0, 0, // IPVS_CMD_NEW_SERVICE, version 1, reserved
        72, 0, 1, 0x80, // IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED, 4 + 68
    ];
    expected.extend_from_slice(&KEY_V4_TCP_80);
    expected.extend_from_slice(&[
        7, 0, 6, 0, b'r', b'r', 0, 0, // SCHED_NAME "rr\0" + 1 pad
        12, 0, 7, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, // FLAGS {flags 0, mask ~0}
        8, 0, 8, 0, 0, 0, 0, 0, // TIMEOUT 0
        8, 0, 9, 0, 0xff, 0xff, 0xff, 0xff, // NETMASK 255.255.255.255 (be32)
    ]);
    assert_eq!(bytes(new_service(&vip_http()).unwrap(), 7), expected);
}

#[test]
fn new_dest_matches_the_abi() {
    // `ipvsadm -a -t 198.51.100.10:80 -r 198.51.100.101:80 -g -w 1`
    let mut expected = vec![
        116, 0, 0, 0, 0x24, 0, 5, 0, 1, 0, 0, 0, 0, 0, 0,
        0, // nlmsghdr: 16 + 4 + 36 + 60, seq 1
        5, 1, 0, 0, // IPVS_CMD_NEW_DEST
        36, 0, 1, 0x80, // SERVICE (key only)
    ];
    expected.extend_from_slice(&KEY_V4_TCP_80);
    expected.extend_from_slice(&[
        60, 0, 2, 0x80, // IPVS_CMD_ATTR_DEST | NLA_F_NESTED
        6, 0, 11, 0, 2, 0, 0, 0, // ADDR_FAMILY = AF_INET
        8, 0, 1, 0, 198, 51, 100, 101, // ADDR
        6, 0, 2, 0, 0, 80, 0, 0, // PORT (be16)
        8, 0, 3, 0, 3, 0, 0, 0, // FWD_METHOD = IP_VS_CONN_F_DROUTE
        8, 0, 4, 0, 1, 0, 0, 0, // WEIGHT 1
        8, 0, 5, 0, 0, 0, 0, 0, // U_THRESH
        8, 0, 6, 0, 0, 0, 0, 0, // L_THRESH
    ]);
    assert_eq!(
        bytes(
            new_dest(&vip_http().key, &real("198.51.100.101")).unwrap(),
            1
        ),
        expected
    );
}

#[test]
fn ipv6_persistence_netmask_is_a_host_order_prefix_length() {
    // Seen from the kernel (Debian 6.1, ipvsadm 1.31): `ipvsadm -A -t
    // [2001:db8::10]:443` stores 128 as a native u32; IPv4 masks are be32.
    let mut s = vip_http();
    s.key = ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: "2001:db8::10".parse().unwrap(),
        port: 443,
    };
    s.netmask = 128;
    let out = bytes(new_service(&s).unwrap(), 1);
    assert_eq!(&out[out.len() - 4..], &128u32.to_ne_bytes());
}

#[test]
fn dumps_carry_the_dump_flag() {
    let out = bytes(get_services().unwrap(), 2);
    // 16 + 4: no attributes; flags REQUEST | ACK | NLM_F_DUMP (0x300).
    assert_eq!(
        out,
        vec![
            20, 0, 0, 0, 0x24, 0, 0x05, 0x03, 2, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0
        ]
    );
}

#[test]
fn only_table_changes_may_go_without_an_ack() {
    let s = vip_http();
    let d = real("203.0.113.1");
    let daemon = SyncDaemon {
        role: SyncRole::Master,
        ifname: "eth0".into(),
        sync_id: 1,
        max_len: None,
        group: None,
        port: None,
        ttl: None,
    };
    let changes = [
        new_service(&s),
        set_service(&s),
        del_service(&s.key),
        new_dest(&s.key, &d),
        set_dest(&s.key, &d),
        del_dest(&s.key, &d.addr, d.port),
        set_config(&Timeouts::default()),
        new_daemon(&daemon),
        del_daemon(SyncRole::Master),
    ];
    for req in changes {
        let req = req.unwrap();
        assert!(!req.answers, "command {} answers", req.genl.cmd());
    }
    let gets = [
        get_services(),
        get_dests(&s.key),
        get_info(),
        get_config(),
        get_daemons(),
    ];
    for req in gets {
        let req = req.unwrap();
        assert!(req.answers, "command {} answers nothing", req.genl.cmd());
    }
}

#[test]
fn gue_tunnel_attributes_are_sent_only_for_gue_and_gre() {
    let mut d = real("198.51.100.102");
    d.forward = Forward::Tunnel;
    let ipip = bytes(new_dest(&vip_http().key, &d).unwrap(), 1);
    d.tunnel = Tunnel::Gue {
        port: 6080,
        flags: 1,
    };
    let gue = bytes(new_dest(&vip_http().key, &d).unwrap(), 1);
    // TUN_TYPE (u8, padded to 8) + TUN_PORT (be16, 8) + TUN_FLAGS (u16, 8).
    assert_eq!(gue.len(), ipip.len() + 24);
    let tail = &gue[gue.len() - 24..];
    assert_eq!(
        tail,
        &[
            5, 0, 13, 0, 1, 0, 0, 0, 6, 0, 14, 0, 0x17, 0xc0, 0, 0, 6, 0, 15, 0, 1, 0, 0, 0
        ]
    );
}

/// A reply carries the same nested layout as a request; decode what we encode.
fn reencode_service(s: &Service) -> ServiceEntry {
    let req = new_service(s).unwrap();
    parse_service(&req.genl).unwrap()
}

#[test]
fn services_round_trip_every_form() {
    let mut v6 = vip_http();
    v6.key = ServiceKey::Addr {
        protocol: Protocol::Sctp,
        addr: "2001:db8::10".parse().unwrap(),
        port: 443,
    };
    v6.netmask = 128;
    let mut fwm = vip_http();
    fwm.key = ServiceKey::Fwmark {
        family: Family::V4,
        mark: 7,
    };
    fwm.scheduler = "sh".into();
    fwm.flags = abi::svc_flag::PERSISTENT | abi::svc_flag::SCHED1 | abi::svc_flag::SCHED2;
    fwm.timeout = 300;
    fwm.netmask = 0xffff_ff00;
    let mut udp = vip_http();
    udp.key = ServiceKey::Addr {
        protocol: Protocol::Udp,
        addr: "203.0.113.53".parse().unwrap(),
        port: 53,
    };
    udp.flags = abi::svc_flag::ONEPACKET;
    udp.pe_name = Some("sip".into());
    for s in [vip_http(), v6, fwm, udp] {
        assert_eq!(reencode_service(&s).service, s);
    }
}

#[test]
fn the_kernels_hashed_flag_is_not_part_of_the_settings() {
    let mut s = vip_http();
    s.flags = abi::svc_flag::HASHED | abi::svc_flag::PERSISTENT;
    assert_eq!(
        reencode_service(&s).service.flags,
        abi::svc_flag::PERSISTENT
    );
}

#[test]
fn dests_round_trip_every_method() {
    let key = vip_http().key;
    for (forward, tunnel) in [
        (Forward::Masq, Tunnel::Ipip),
        (Forward::Route, Tunnel::Ipip),
        (Forward::Tunnel, Tunnel::Ipip),
        (
            Forward::Tunnel,
            Tunnel::Gue {
                port: 6080,
                flags: 3,
            },
        ),
        (Forward::Tunnel, Tunnel::Gre { flags: 1 }),
    ] {
        let mut d = real("2001:db8::101");
        d.forward = forward;
        d.tunnel = tunnel;
        d.weight = 7;
        d.upper = 100;
        d.lower = 50;
        let req = new_dest(&key, &d).unwrap();
        assert_eq!(parse_dest(&req.genl, Family::V4).unwrap().dest, d);
    }
}

#[test]
fn sync_daemons_round_trip() {
    let d = SyncDaemon {
        role: SyncRole::Backup,
        ifname: "eth0".into(),
        sync_id: 9,
        max_len: Some(1400),
        group: Some("239.0.0.81".parse().unwrap()),
        port: Some(8849),
        ttl: Some(2),
    };
    let req = new_daemon(&d).unwrap();
    assert_eq!(parse_daemon(&req.genl).unwrap(), d);
}

#[test]
fn a_reply_without_its_service_names_what_is_missing() {
    let err = parse_service(&get_services().unwrap().genl).unwrap_err();
    assert_eq!(
        err.to_string(),
        "IPVS reply: service has no IPVS_CMD_ATTR_SERVICE attribute"
    );
}
