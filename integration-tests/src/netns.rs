//! Network namespace topologies on the host kernel (tier 2).
//!
//! A [`Lan`] is a bridge inside its own hub namespace; each [`Host`] is a
//! namespace joined to that bridge by a veth pair, with `lo` up and one
//! address. Nothing is created in the host's own namespace, and everything is
//! deleted on drop (panics included): deleting a namespace deletes its links,
//! and processes still running in it are killed first. Addresses must come
//! from TEST-NET-2 (198.51.100.0/24) or TEST-NET-3 (203.0.113.0/24): the
//! harness refuses any other, so a test cannot send traffic anywhere real.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// Prefix of every namespace this harness creates.
pub const PREFIX: &str = "tdm";

/// A harness failure, naming the command or rule that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A command could not be started.
    #[error("running `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A command exited non-zero.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// An address outside the test ranges, or not `a.b.c.d/len`.
    #[error("{0}: tests may only use 198.51.100.0/24 or 203.0.113.0/24 (as a.b.c.d/len)")]
    Address(String),
    /// A socket or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Entering the namespace failed.
    #[error("entering namespace {name}: {source}")]
    Enter {
        /// The namespace.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Runs `program args…`, returning its output, or an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<Output, NetnsError> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| NetnsError::Spawn {
            command: command.clone(),
            source,
        })?;
    succeeded(command, output)
}

/// `output`, or [`NetnsError::Failed`] with its stderr if `command` failed.
fn succeeded(command: String, output: Output) -> Result<Output, NetnsError> {
    if !output.status.success() {
        return Err(NetnsError::Failed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output)
}

/// Checks `cidr` is `a.b.c.d/len` inside a test range.
pub fn check_test_address(cidr: &str) -> Result<Ipv4Addr, NetnsError> {
    let bad = || NetnsError::Address(cidr.to_owned());
    let (addr, len) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let [a, b, c, _] = addr.octets();
    let in_range = matches!((a, b, c), (198, 51, 100) | (203, 0, 113));
    if !in_range || !(24..=32).contains(&len) {
        return Err(bad());
    }
    Ok(addr)
}

/// A network namespace, deleted (with its links and processes) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `tdm-<label>-<pid>-<n>` with `lo` up.
    pub fn new(label: &str) -> Result<Self, NetnsError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}-{label}-{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (as `ip netns` knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> args…`.
    pub fn ip(&self, args: &[&str]) -> Result<Output, NetnsError> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `f` on a thread that has entered the namespace, so sockets it
    /// opens live there (and stay there when handed back to other threads).
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R, NetnsError> {
        let path = format!("/run/netns/{}", self.name);
        let enter_err = |source| NetnsError::Enter {
            name: self.name.clone(),
            source,
        };
        let file = File::open(&path).map_err(enter_err)?;
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
                        .map_err(|e| enter_err(e.into()))?;
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Reads sysctl `key` (dotted, e.g. `net.ipv4.ip_forward`) in the namespace.
    pub fn sysctl(&self, key: &str) -> Result<String, NetnsError> {
        let path = sysctl_path(key);
        self.enter(|| std::fs::read_to_string(&path))?
            .map(|v| v.trim().to_owned())
            .map_err(|source| NetnsError::Io {
                what: format!("reading {path}"),
                source,
            })
    }

    /// Writes sysctl `key` (dotted) in the namespace.
    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<(), NetnsError> {
        let path = sysctl_path(key);
        self.enter(|| std::fs::write(&path, value))?
            .map_err(|source| NetnsError::Io {
                what: format!("writing {value} to {path}"),
                source,
            })
    }

    /// Loads nftables `rules` (an `nft -f` script) in the namespace.
    pub fn nft(&self, rules: &str) -> Result<(), NetnsError> {
        use std::io::Write;
        let command = format!("nft -f - (in {}): {rules}", self.name);
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|source| NetnsError::Spawn {
                command: command.clone(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(rules.as_bytes())
                .map_err(|source| NetnsError::Io {
                    what: command.clone(),
                    source,
                })?;
        }
        let output = child.wait_with_output().map_err(|source| NetnsError::Io {
            what: command.clone(),
            source,
        })?;
        succeeded(command, output).map(drop)
    }

    /// Deletes nftables table `inet <table>` in the namespace.
    pub fn nft_delete_table(&self, table: &str) -> Result<(), NetnsError> {
        self.nft(&format!("delete table inet {table}\n"))
    }

    fn kill_processes(&self) {
        let Ok(out) = run("ip", &["netns", "pids", &self.name]) else {
            return;
        };
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Some(pid) = pid.parse().ok().and_then(rustix::process::Pid::from_raw) {
                let _gone = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_processes();
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!("netns cleanup: {e}");
        }
    }
}

/// `net.ipv4.conf.eth0.arp_ignore` -> `/proc/sys/net/ipv4/conf/eth0/arp_ignore`
/// (/proc/sys/net shows the namespace of the thread that opens it).
fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// Deletes namespaces left by harness processes that died without cleaning
/// up (killed with SIGKILL): names carry the creating process's pid.
pub fn remove_stale() {
    let Ok(out) = run("ip", &["netns", "list"]) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let mut parts = name.rsplitn(3, '-');
        let (_n, pid) = (parts.next(), parts.next());
        let dead = pid
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists());
        if name.starts_with(&format!("{PREFIX}-")) && dead {
            let _ = run("ip", &["netns", "del", name]);
        }
    }
}

/// A bridge in its own hub namespace that hosts join.
#[derive(Debug)]
pub struct Lan {
    hub: Netns,
    ports: AtomicU32,
}

/// A namespace on a [`Lan`], reachable at its address.
#[derive(Debug)]
pub struct Host {
    /// The host's namespace.
    pub ns: Netns,
    /// Its address on the LAN (on `eth0`).
    pub addr: Ipv4Addr,
}

impl Lan {
    /// A new LAN: namespace `tdm-<label>…` holding bridge `br0`, up.
    pub fn new(label: &str) -> Result<Self, NetnsError> {
        remove_stale();
        let hub = Netns::new(label)?;
        hub.ip(&["link", "add", "br0", "type", "bridge"])?;
        hub.ip(&["link", "set", "br0", "up"])?;
        Ok(Self {
            hub,
            ports: AtomicU32::new(0),
        })
    }

    /// The hub namespace (where the bridge is).
    pub fn hub(&self) -> &Netns {
        &self.hub
    }

    /// A new namespace joined to the bridge as `eth0` with `cidr` on it.
    pub fn host(&self, label: &str, cidr: &str) -> Result<Host, NetnsError> {
        let addr = check_test_address(cidr)?;
        let ns = Netns::new(label)?;
        self.attach(&ns, "eth0", cidr)?;
        Ok(Host { ns, addr })
    }

    /// Joins an existing namespace to this bridge as interface `ifname`
    /// with `cidr` on it (a router or director on two LANs).
    pub fn attach(&self, ns: &Netns, ifname: &str, cidr: &str) -> Result<(), NetnsError> {
        check_test_address(cidr)?;
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::Relaxed));
        let peer = [
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            ifname,
            "netns",
            ns.name(),
        ];
        self.hub.ip(&peer)?;
        self.hub
            .ip(&["link", "set", &port, "master", "br0", "up"])?;
        ns.ip(&["addr", "add", cidr, "dev", ifname])?;
        ns.ip(&["link", "set", ifname, "up"])?;
        Ok(())
    }
}

/// A NAT cluster: a client (203.0.113.2) and a director (203.0.113.1,
/// holding VIP 203.0.113.10 on `eth0`, forwarding) on the front LAN; the
/// director (198.51.100.1 on `eth1`) and real servers `real-1`… at
/// 198.51.100.101… on the back LAN, routed through the director.
pub struct NatCluster {
    /// The front LAN.
    pub front: Lan,
    /// The back LAN.
    pub back: Lan,
    /// The director.
    pub director: Host,
    /// The client.
    pub client: Host,
    /// The real servers, in address order.
    pub reals: Vec<Host>,
}

impl NatCluster {
    /// Builds the cluster with `reals` real servers (LANs `<label>-f`, `<label>-b`).
    pub fn new(label: &str, reals: usize) -> Result<Self, NetnsError> {
        let front = Lan::new(&format!("{label}-f"))?;
        let back = Lan::new(&format!("{label}-b"))?;
        let director = front.host("dir", "203.0.113.1/24")?;
        back.attach(&director.ns, "eth1", "198.51.100.1/24")?;
        director
            .ns
            .ip(&["addr", "add", "203.0.113.10/32", "dev", "eth0"])?;
        director.ns.set_sysctl("net.ipv4.ip_forward", "1")?;
        let client = front.host("cli", "203.0.113.2/24")?;
        let reals = (1..=reals)
            .map(|i| {
                let real =
                    back.host(&format!("real-{i}"), &format!("198.51.100.{}/24", 100 + i))?;
                real.ns
                    .ip(&["route", "add", "default", "via", "198.51.100.1"])?;
                Ok(real)
            })
            .collect::<Result<_, NetnsError>>()?;
        Ok(Self {
            front,
            back,
            director,
            client,
            reals,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_test_ranges_are_accepted() {
        assert!(check_test_address("198.51.100.10/24").is_ok());
        assert!(check_test_address("203.0.113.200/32").is_ok());
        for bad in [
            "192.168.1.1/24",
            "10.0.0.1/8",
            "198.51.101.1/24",
            "198.51.100.1",
            "203.0.113.1/16",
        ] {
            assert!(check_test_address(bad).is_err(), "{bad}");
        }
    }
}
