//! A serial line between two programs made of two real pseudo-terminals:
//! each program opens its own pty slave as its serial device, and this
//! harness is the wire between the two masters, copying bytes both ways.
//! A test can put line noise on the wire ([`SerialLine::noise`]), which a
//! socat pty pair cannot do.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

/// Two ptys joined master to master.
pub struct SerialLine {
    /// The first end's device (a pty slave, e.g. `/dev/pts/7`).
    pub a: PathBuf,
    /// The second end's device.
    pub b: PathBuf,
    towards_a: Arc<Mutex<File>>,
    towards_b: Arc<Mutex<File>>,
    stop: Arc<AtomicBool>,
}

fn pty() -> std::io::Result<(OwnedFd, PathBuf)> {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    Ok((master, PathBuf::from(name.to_string_lossy().into_owned())))
}

impl SerialLine {
    /// Opens both ptys and starts copying until dropped.
    pub fn new() -> std::io::Result<Self> {
        let (master_a, a) = pty()?;
        let (master_b, b) = pty()?;
        let read_a = File::from(master_a.try_clone()?);
        let read_b = File::from(master_b.try_clone()?);
        let towards_a = Arc::new(Mutex::new(File::from(master_a)));
        let towards_b = Arc::new(Mutex::new(File::from(master_b)));
        let stop = Arc::new(AtomicBool::new(false));
        copy(read_a, towards_b.clone(), stop.clone());
        copy(read_b, towards_a.clone(), stop.clone());
        Ok(Self {
            a,
            b,
            towards_a,
            towards_b,
            stop,
        })
    }

    /// Writes `bytes` onto the line towards both ends, between frames or
    /// in the middle of one, as noise would.
    pub fn noise(&self, bytes: &[u8]) {
        for side in [&self.towards_a, &self.towards_b] {
            if let Ok(mut file) = side.lock() {
                let _ = file.write_all(bytes);
            }
        }
    }
}

impl Drop for SerialLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn copy(mut from: File, to: Arc<Mutex<File>>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::Relaxed) {
            match from.read(&mut buf) {
                Ok(0) => std::thread::sleep(std::time::Duration::from_millis(5)),
                Ok(n) => {
                    if let Ok(mut file) = to.lock() {
                        let _ = file.write_all(&buf[..n]);
                    }
                }
                // EIO: no slave open on this side (yet, or any more).
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
    });
}
