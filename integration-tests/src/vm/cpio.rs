//! The newc cpio writer for the initramfs: directories, files, symlinks and
//! character devices, built in memory so device nodes need no root. It only
//! writes archives, uncompressed; every entry is owned by root with mtime 0.

/// A newc-format cpio archive being built.
#[derive(Default)]
pub(super) struct Cpio {
    data: Vec<u8>,
    next_inode: u32,
}

impl Cpio {
    /// Adds a directory, mode 0755.
    pub(super) fn dir(&mut self, path: &str) {
        self.entry(path, 0o040_755, 0, &[]);
    }

    /// Adds a regular file.
    pub(super) fn file(&mut self, path: &str, perm: u32, contents: &[u8]) {
        self.entry(path, 0o100_000 | perm, 0, contents);
    }

    /// Adds a symbolic link to `target`.
    pub(super) fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, 0o120_777, 0, target.as_bytes());
    }

    /// Adds a character device node.
    pub(super) fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.entry(path, 0o020_000 | perm, (major << 8) | minor, &[]);
    }

    /// The finished archive, with its trailer.
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 0, &[]);
        self.data
    }

    /// `rdev` packs major << 8 | minor.
    fn entry(&mut self, name: &str, mode: u32, rdev: u32, contents: &[u8]) {
        self.next_inode += 1;
        let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
        let size = u32::try_from(contents.len()).unwrap_or(u32::MAX);
        let name_size = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size,
            0, // dev major
            0, // dev minor
            rdev >> 8,
            rdev & 0xff,
            name_size,
            0, // check
        ];
        self.data.extend_from_slice(b"070701");
        for field in fields {
            self.data
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(contents);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }
}
