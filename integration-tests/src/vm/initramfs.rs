//! The initramfs: the guest's `/init` script, a static busybox, and the kernel's
//! chosen modules, packed as a newc cpio, plus the recipe key that names the
//! cached image. It builds the image in memory; writing it to the cache is the
//! caller's job.

use std::fs;
use std::io;

use super::VmError;
use super::cpio::Cpio;
use super::host::io_error;
use super::kernel::Unpacked;
use super::modules::{self, BOOT_MODULES, Kmod, NOT_SCHEDULERS, ON_DEMAND_MODULES};

/// The host's busybox, copied into the image; it must be statically linked.
pub(super) const BUSYBOX: &str = "/bin/busybox";
/// Bump when the initramfs recipe changes in a way the hashed inputs miss.
const RECIPE: &str = "tandem-vm initramfs v1";

/// The guest's `/init`. The kernel passes `tandem_job=<path>` from its command
/// line in the environment; `<path>.sh` holds the command and `<path>.cwd` the
/// directory to run it in, both on the host root.
pub(super) const INIT_SCRIPT: &str = r#"#!/bin/sh
# tandem VM init: load modules, chroot into the host root (9p), run one command.
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
fail() { echo "tandem-vm: $*"; poweroff -f; echo o > /proc/sysrq-trigger; sleep 10; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do
    insmod "/lib/modules/$(uname -r)/$m" || echo "tandem-vm: insmod $m failed"
done < /etc/tandem-vm-modules
ip link set lo up || fail "cannot bring lo up"
hostname tandem-vm
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=262144 host /mnt \
    || fail "cannot mount the host root over 9p"
mount -t proc proc /mnt/proc
mount -t sysfs sysfs /mnt/sys
mount -t devtmpfs devtmpfs /mnt/dev
mkdir -p /mnt/dev/pts /mnt/dev/shm
mount -t devpts devpts /mnt/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /mnt/dev/shm
ln -sf /proc/self/fd /mnt/dev/fd
ln -sf fd/0 /mnt/dev/stdin
ln -sf fd/1 /mnt/dev/stdout
ln -sf fd/2 /mnt/dev/stderr
mount -t tmpfs -o mode=1777 tmpfs /mnt/tmp || fail "cannot mount /tmp"
mount -t tmpfs -o mode=0755 tmpfs /mnt/run || fail "cannot mount /run"
mkdir -p /mnt/run/netns /mnt/run/lock
if [ -d /mnt/var/tmp ] && [ ! -L /mnt/var/tmp ]; then
    mount -t tmpfs -o mode=1777 tmpfs /mnt/var/tmp
fi
[ -n "$tandem_job" ] || fail "no tandem_job= on the kernel command line"
id=${tandem_job##*/}
# Raw console output (no CR before LF), and no kernel chatter in the command's output.
stty -onlcr 2>/dev/null
echo 1 > /proc/sys/kernel/printk
printf '\n%s %s\n' TANDEM-VM-BEGIN "$id"
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    TERM=dumb USER=root LOGNAME=root \
    chroot /mnt /bin/sh -c 'cd "$(cat "$1.cwd")" 2>/dev/null || cd /
script=$(cat "$1.sh") || exit 125
exec /bin/sh -c "$script"' tandem-vm "$tandem_job" </dev/null 2>&1
status=$?
printf '\n%s %s %s\n' TANDEM-VM-END "$id" "$status"
# stty sets the mode with TCSADRAIN: it returns once the console has sent everything.
stty -onlcr 2>/dev/null
poweroff -f
echo o > /proc/sysrq-trigger
sleep 10
"#;

/// The cache file name of the image this recipe builds:
/// `initramfs-<recipe key, 16 hex digits>.cpio`.
pub(super) fn file_name() -> String {
    format!("initramfs-{:016x}.cpio", recipe_key())
}

/// Builds initramfs images; made only once the host has every tool it needs.
pub(super) struct Builder {
    kmod: Kmod,
    busybox: Vec<u8>,
}

impl Builder {
    /// Fails if `kmod` or a static `/bin/busybox` is missing.
    pub(super) fn find() -> Result<Self, VmError> {
        let kmod = Kmod::find()?;
        let busybox = fs::read(BUSYBOX).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => VmError::MissingTool {
                tool: "busybox",
                package: "busybox-static",
            },
            _ => io_error(format!("reading {BUSYBOX}"), e),
        })?;
        if !is_static_elf(&busybox) {
            return Err(VmError::BusyboxNotStatic);
        }
        Ok(Self { kmod, busybox })
    }

    /// The image for `kernel`: an uncompressed newc cpio.
    pub(super) fn build(&self, kernel: &Unpacked) -> Result<Vec<u8>, VmError> {
        let modules = self.kmod.resolve(kernel)?;
        let mut cpio = Cpio::default();
        for d in [
            "bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "mnt", "etc",
        ] {
            cpio.dir(d);
        }
        cpio.file("init", 0o755, INIT_SCRIPT.as_bytes());
        cpio.file("bin/busybox", 0o755, &self.busybox);
        cpio.symlink("bin/sh", "busybox");
        cpio.symlink("sbin/modprobe", "/bin/busybox");
        cpio.char_dev("dev/console", 0o600, 5, 1);
        cpio.file(
            "etc/tandem-vm-modules",
            0o644,
            modules.boot_list().as_bytes(),
        );
        let base = format!("lib/modules/{}", kernel.version);
        cpio.dir("lib");
        cpio.dir("lib/modules");
        cpio.dir(&base);
        for d in &modules.dirs() {
            cpio.dir(&format!("{base}/{}", d.display()));
        }
        for file in &modules.files {
            let bytes = modules::module_bytes(&kernel.moddir.join(file))?;
            cpio.file(
                &format!("{base}/{}", modules::plain_ko(file)),
                0o644,
                &bytes,
            );
        }
        // For busybox modprobe: the dependency and alias lines of the modules we ship.
        let dep = modules.dep(&kernel.moddir)?;
        cpio.file(&format!("{base}/modules.dep"), 0o644, dep.as_bytes());
        let alias = modules.alias(&kernel.moddir)?;
        cpio.file(&format!("{base}/modules.alias"), 0o644, alias.as_bytes());
        Ok(cpio.finish())
    }
}

/// Whether `elf` is an x86-64 ELF executable with no program interpreter.
fn is_static_elf(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(entsize), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(count))
        .all(|i| u32_at(phoff + i * usize::from(entsize)).is_some_and(|p_type| p_type != PT_INTERP))
}

/// Hash of everything that shapes the initramfs, for its cache file name.
fn recipe_key() -> u64 {
    // FNV-1a: stable across Rust releases, unlike `DefaultHasher`.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let parts = [RECIPE, INIT_SCRIPT, BUSYBOX]
        .into_iter()
        .chain(BOOT_MODULES.iter().copied())
        .chain(ON_DEMAND_MODULES.iter().copied())
        .chain(NOT_SCHEDULERS.iter().copied());
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_busybox_is_recognised() {
        if let Ok(bytes) = fs::read(BUSYBOX) {
            assert!(is_static_elf(&bytes));
        }
        if let Ok(bytes) = fs::read("/bin/ls") {
            assert!(!is_static_elf(&bytes));
        }
    }
}
