//! A small tmpfs, to fill a real filesystem in full-disk tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for one test, unmounted when dropped. Mounting needs root (as the tests have
/// here and in CI): a refused mount fails the test saying so, it is never skipped.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=`: "1m") at `path`, creating the folder.
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("create the tmpfs mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this full-disk test mounts a small tmpfs, which needs root: mount said {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Grows or shrinks the mounted filesystem, keeping its files.
    pub fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a server still holding files open must not keep the mount behind.
        let _unmounted = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
