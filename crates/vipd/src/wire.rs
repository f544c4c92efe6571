//! [`LinkSender`]: puts whole Ethernet frames on one interface through a
//! packet socket (AF_PACKET, SOCK_RAW). Protocol 0: the socket receives
//! nothing, it only sends.

use std::io;

use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};

/// A send-only packet socket for one interface.
pub struct LinkSender {
    socket: Socket,
    ifindex: i32,
}

impl LinkSender {
    /// Opens a packet socket that sends on interface `ifindex`.
    pub fn open(ifindex: u32) -> io::Result<Self> {
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        let ifindex = i32::try_from(ifindex).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range")
        })?;
        Ok(Self { socket, ifindex })
    }

    /// Sends `frame` (destination MAC in its first 6 bytes, EtherType at
    /// bytes 12..14) as it is.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let (Some(dst), Some(ethertype)) = (frame.get(0..6), frame.get(12..14)) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame shorter than an Ethernet header",
            ));
        };
        let mut mac = [0u8; 8];
        mac[..6].copy_from_slice(dst);
        let address = link_address(self.ifindex, [ethertype[0], ethertype[1]], mac);
        let sent = self.socket.send_to(frame, &address)?;
        if sent == frame.len() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "sent {sent} of {} bytes",
                frame.len()
            )))
        }
    }
}

/// A `sockaddr_ll` for sending to `mac` on `ifindex` with EtherType
/// `ethertype` (network byte order, as on the wire).
fn link_address(ifindex: i32, ethertype: [u8; 2], mac: [u8; 8]) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    #[allow(
        unsafe_code,
        reason = "socket2 has no safe constructor for sockaddr_ll; viewing zeroed storage as it is sound"
    )]
    // SAFETY: sockaddr_ll is a sockaddr_* type of this platform and fits in
    // sockaddr_storage (view_as asserts the size).
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or(17);
    ll.sll_protocol = u16::from_ne_bytes(ethertype);
    ll.sll_ifindex = ifindex;
    ll.sll_halen = 6;
    ll.sll_addr = mac;
    let len = u32::try_from(size_of::<libc::sockaddr_ll>()).unwrap_or(20);
    #[allow(
        unsafe_code,
        reason = "socket2 has no safe constructor for sockaddr_ll"
    )]
    // SAFETY: the storage holds an initialised sockaddr_ll of length `len`.
    unsafe {
        SockAddr::new(storage, len)
    }
}
