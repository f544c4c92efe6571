//! The rule format against text ipvsadm 1.31 printed (`ipvsadm-save -n`,
//! Debian 6.1 kernel, captured in the VM tier on 2026-11-25).

use super::*;

/// Printed by ipvsadm-save -n after the matching `ipvsadm -A/-a` commands.
const CAPTURED: &str = "\
-A -t 198.51.100.10:8 -s rr
-A -t 203.0.113.1:80 -s rr
-A -t 10.1.1.1:80 -s rr
-A -u 198.51.100.10:53 -s sh -b sh-port
-A -u 198.51.100.10:80 -s wrr -p 300 -M 255.255.0.0 -o -b flag-1,flag-3
-a -u 198.51.100.10:80 -r 198.51.100.1:80 -g -w 65535
-a -u 198.51.100.10:80 -r 198.51.100.2:80 -i -w 0 --tun-type gre --tun-csum
-a -u 198.51.100.10:80 -r 198.51.100.101:80 -m -w 3
-a -u 198.51.100.10:80 -r 10.0.0.1:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-remcsum
-A --sctp-service 198.51.100.9:3868 -s nq
-A -t [2001:db8::10]:443 -s lc -p 360
-A -f 3 -s lc
-A -f 7 -6 -s rr -p 60 -M 64
-a -f 7 -6 -r [2001:db8::1]:0 -g -w 1
";

#[test]
fn export_of_an_import_is_byte_identical_to_ipvsadm_save() {
    let table = import(CAPTURED).unwrap();
    assert_eq!(export(&table), CAPTURED);
}

#[test]
fn the_seeds_rules_load_as_they_are() {
    // /etc/sysconfig/ipvsadm from the 2007 write-up (its addresses as they are).
    let seed = "
-A -t 192.168.136.10:80 -s rr

-a -t 192.168.136.10:80 -r 192.168.136.11:80 -i

-a -t 192.168.136.10:80 -r 192.168.136.12:80 -i

-a -t 192.168.136.10:80 -r 192.168.136.101:80 -i

-a -t 192.168.136.10:80 -r 192.168.136.102:80 -i

-a -t 192.168.136.10:80 -r 192.168.136.103:80 -i
";
    let table = import(seed).unwrap();
    assert_eq!((table.services.len(), table.dest_count()), (1, 5));
    let spec = table.services.values().next().unwrap();
    assert_eq!(spec.service.scheduler, "rr");
    assert!(
        spec.dests
            .values()
            .all(|d| d.forward == Forward::Tunnel && d.weight == 1)
    );
}

#[test]
fn defaults_match_ipvsadm() {
    let t =
        import("-A -t 198.51.100.10:80 -p\n-a -t 198.51.100.10:80 -r 198.51.100.101\n").unwrap();
    let spec = t.services.values().next().unwrap();
    assert_eq!(spec.service.scheduler, "wlc");
    assert_eq!(spec.service.timeout, 360);
    let d = spec.dests.values().next().unwrap();
    assert_eq!((d.port, d.forward, d.weight), (80, Forward::Route, 1));
}

#[test]
fn bad_lines_name_the_line_and_import_nothing() {
    for (text, line, needle) in [
        (
            "-A -t 198.51.100.10:80 -s rr\n-a -t 198.51.100.10:81 -r 198.51.100.1:80\n",
            2,
            "no earlier -A",
        ),
        ("-A -t 198.51.100.10 -s rr\n", 1, "needs a port"),
        (
            "-A -t 198.51.100.10:80 -s rr -b flag-9\n",
            1,
            "unknown scheduler flag",
        ),
        (
            "-A -t 198.51.100.10:80\n-A -t 198.51.100.10:80\n",
            2,
            "defined twice",
        ),
        ("-E -t 198.51.100.10:80\n", 1, "only -A, -a and -C"),
        ("-A -t 198.51.100.300:80\n", 1, "not ADDRESS"),
        ("-A -t 198.51.100.10:80 -p -M 33\n", 1, "IPv4 netmask"),
    ] {
        let err = import(text).unwrap_err();
        assert_eq!(err.line, line, "{text}: {err}");
        assert!(err.message.contains(needle), "{text}: {err}");
    }
}

#[test]
fn ipvsadm_address_order_wraps() {
    let a: IpAddr = "198.51.100.1".parse().unwrap();
    let b: IpAddr = "10.0.0.1".parse().unwrap();
    assert_eq!(
        cmp_addr(&a, &b),
        Ordering::Less,
        "10.x sorts after 198.x, as ipvsadm prints"
    );
}
