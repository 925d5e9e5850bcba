//! Content hash of a function folder, used to decide when its image must be rebuilt.
//!
//! The hash covers every regular file and symlink under the folder: its path relative to the
//! folder (`/`-separated), its executable bit and the sha256 of its contents (a symlink's
//! target text instead). Directories named `target` or `__pycache__` and every entry whose
//! name starts with `.` (dotfiles, `.git/`) are skipped, as are empty directories. The result
//! does not depend on where the folder is, on timestamps or on directory listing order.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Hex sha256 over the folder's files (see the module docs for exactly what is covered).
pub fn folder_content_hash(dir: &Path) -> io::Result<String> {
    let mut entries: Vec<(Vec<u8>, PathBuf)> = Vec::new();
    // Explicit stack: no recursion however deep the tree is.
    let mut pending: Vec<(Vec<u8>, PathBuf)> = vec![(Vec::new(), dir.to_path_buf())];
    while let Some((rel, path)) = pending.pop() {
        for item in fs::read_dir(&path)? {
            let item = item?;
            let name = item.file_name();
            let name_bytes = name.as_encoded_bytes();
            if name_bytes.starts_with(b".") {
                continue;
            }
            let mut child_rel = rel.clone();
            if !child_rel.is_empty() {
                child_rel.push(b'/');
            }
            child_rel.extend_from_slice(name_bytes);
            let file_type = item.file_type()?;
            if file_type.is_dir() {
                if name_bytes == b"target" || name_bytes == b"__pycache__" {
                    continue;
                }
                pending.push((child_rel, item.path()));
            } else {
                entries.push((child_rel, item.path()));
            }
        }
    }
    entries.sort();

    let mut outer = Sha256::new();
    outer.update(b"sluice-folder-v1\0");
    for (rel, path) in &entries {
        let meta = fs::symlink_metadata(path)?;
        let (kind, digest) = if meta.file_type().is_symlink() {
            let target = fs::read_link(path)?;
            (b'l', Sha256::digest(target.as_os_str().as_encoded_bytes()))
        } else {
            let mut inner = Sha256::new();
            let mut file = fs::File::open(path)?;
            io::copy(&mut file, &mut inner)?;
            let kind = if is_executable(&meta) { b'x' } else { b'f' };
            (kind, inner.finalize())
        };
        outer.update((rel.len() as u64).to_le_bytes());
        outer.update(rel);
        outer.update([kind]);
        outer.update(digest);
    }
    Ok(hex::encode(outer.finalize()))
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}
